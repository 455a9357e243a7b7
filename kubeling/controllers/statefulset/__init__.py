"""The StatefulSet controller: ordered pods with stable identity and storage, partitioned rolling updates."""

from kubeling.controllers.statefulset.controller import StatefulSetController

__all__ = ["StatefulSetController"]
