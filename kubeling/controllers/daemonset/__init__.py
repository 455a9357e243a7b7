"""The DaemonSet controller: one pod per eligible node, rolling updates, revision history."""

from kubeling.controllers.daemonset.controller import DaemonSetController

__all__ = ["DaemonSetController"]
