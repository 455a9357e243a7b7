"""NodeName: a pod that names its node fits only there."""

from __future__ import annotations

from kubeling.scheduler.framework import OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "NodeName"
ERR_REASON = "node(s) didn't match the requested node name"


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    wanted = (pod.get("spec") or {}).get("nodeName")
    if not wanted or wanted == info.name:
        return OK
    return unschedulable(NAME, ERR_REASON, resolvable=False)
