"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory end up used in equal shares.

Upstream's score is ``(1 - std) * 100`` over the requested/allocatable fractions of cpu and memory
after placing the pod (actual requests, no non-zero defaults); for two resources the standard
deviation is half their difference.
"""

from __future__ import annotations

from kubeling.scheduler.framework import MAX_NODE_SCORE, OK, CycleState, NodeInfo, Obj, Status
from kubeling.scheduler.plugins.node_resources_fit import SCORED, pod_requests

NAME = "NodeResourcesBalancedAllocation"


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001 - scoring only
    return OK


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    req = state.get("balanced_requests")
    if req is None:
        full = pod_requests(pod)
        req = state["balanced_requests"] = [full.get(r, 0) for r in SCORED]
    fractions = []
    for r, want in zip(SCORED, req, strict=True):
        cap = info.allocatable.get(r, 0)
        if cap <= 0:
            continue
        fractions.append(min(1.0, (info.requested.get(r, 0) + want) / cap))
    if len(fractions) < 2:
        return MAX_NODE_SCORE
    mean = sum(fractions) / len(fractions)
    std = (sum((f - mean) ** 2 for f in fractions) / len(fractions)) ** 0.5
    return int((1 - std) * MAX_NODE_SCORE)
