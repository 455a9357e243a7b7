"""The scheduler: queue, framework and one module per plugin (see scheduler.py)."""

from kubeling.scheduler.scheduler import Scheduler

__all__ = ["Scheduler"]
