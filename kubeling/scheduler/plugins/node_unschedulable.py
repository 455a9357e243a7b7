"""NodeUnschedulable: a cordoned node takes only pods tolerating node.kubernetes.io/unschedulable."""

from __future__ import annotations

from kubeling.api.scheduling import taint_tolerated
from kubeling.scheduler.framework import OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "NodeUnschedulable"
ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001 - the framework's verb
    if not (info.node.get("spec") or {}).get("unschedulable"):
        return OK
    if taint_tolerated(_TAINT, (pod.get("spec") or {}).get("tolerations")):
        return OK
    return unschedulable(NAME, ERR_REASON_UNSCHEDULABLE, resolvable=False)
