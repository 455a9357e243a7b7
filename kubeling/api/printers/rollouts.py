"""Table printer for kubeling's RolloutPlan (``kubectl get rp``): where each plan's rollout stands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeling.api.printers.common import AGE, NAME, Obj, Printer, age, col, name, spec, status


def _step(obj: Obj) -> str:
    steps = spec(obj).get("steps") or []
    current = status(obj).get("currentStep")
    if current is None or not steps:
        return "<none>"
    return f"{min(int(current) + 1, len(steps))}/{len(steps)}"


def _rollout_plan_row(obj: Obj, now: datetime) -> list[Any]:
    st = status(obj)
    target = spec(obj).get("targetRef") or {}
    eligible = st.get("eligibleNodes", 0)
    return [name(obj), f"{target.get('kind', '')}/{target.get('name', '')}", st.get("phase", ""), _step(obj),
            f"{st.get('updatedNodes', 0)}/{eligible}", st.get("availableUpdatedNodes", 0), age(obj, now),
            st.get("stableRevision", ""), st.get("updateRevision", ""), st.get("message", "")]


ROLLOUT_PLAN = Printer((
    NAME,
    col("Target", "string", "The DaemonSet this plan rolls out."),
    col("Phase", "string", "Progressing, Paused, Succeeded, RolledBack or Failed."),
    col("Step", "string", "The step in progress, of all steps."),
    col("Updated", "string", "Eligible nodes running the update revision, of all eligible nodes."),
    col("Available", "integer", "Updated nodes whose daemon pod is available."),
    AGE,
    col("Stable", "string", "The last revision that reached 100%.", 1),
    col("Update", "string", "The revision being rolled out.", 1),
    col("Message", "string", "A human-readable account of the phase.", 1),
), _rollout_plan_row)
