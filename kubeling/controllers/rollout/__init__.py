"""Progressive DaemonSet rollouts driven by RolloutPlans (``rollouts.kubeling.io/v1alpha1``).

``steps`` is the pure arithmetic shared with the DaemonSet controller; the controller class is
loaded lazily so that importing ``steps`` from the DaemonSet controller creates no import cycle.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RolloutPlanController"]


def __getattr__(name: str) -> Any:
    if name == "RolloutPlanController":
        from kubeling.controllers.rollout.controller import RolloutPlanController

        return RolloutPlanController
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
