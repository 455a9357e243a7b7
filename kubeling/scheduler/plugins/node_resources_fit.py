"""NodeResourcesFit: the pod's requests must fit in what the node has left; LeastAllocated scoring."""

from __future__ import annotations

from typing import Any

from kubeling.api import quantity
from kubeling.scheduler.framework import MAX_NODE_SCORE, OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "NodeResourcesFit"


def _amount(resource: str, value: Any) -> int:
    if resource == "cpu":
        return quantity.milli_value(value)
    return int(quantity.parse_value(value))


def pod_requests(pod: Obj) -> dict[str, int]:
    """Effective requests as upstream: sum of containers, at least each init container, plus overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for r, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[r] = total.get(r, 0) + _amount(r, v)
    for c in spec.get("initContainers") or []:
        for r, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[r] = max(total.get(r, 0), _amount(r, v))
    for r, v in (spec.get("overhead") or {}).items():
        total[r] = total.get(r, 0) + _amount(r, v)
    return total


def allocatable(node: Obj) -> dict[str, int]:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return {r: _amount(r, v) for r, v in alloc.items()}


def _state(state: CycleState, pod: Obj) -> dict[str, int]:
    req = state.get("requests")
    if req is None:
        req = state["requests"] = pod_requests(pod)
    return req


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    req = _state(state, pod)
    alloc = allocatable(info.node)
    reasons = []
    if len(info.pods) + 1 > alloc.get("pods", 110):
        reasons.append("Too many pods")
    for r, amount in req.items():
        if amount <= 0:
            continue
        if r not in alloc and not (r.startswith("hugepages-") or r in ("cpu", "memory", "ephemeral-storage")):
            reasons.append(f"Insufficient {r}")
            continue
        if info.requested.get(r, 0) + amount > alloc.get(r, 0):
            reasons.append(f"Insufficient {r}")
    if reasons:
        return unschedulable(NAME, *reasons)
    return OK


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    """LeastAllocated over cpu and memory (pods without requests count upstream's defaults)."""
    req = _state(state, pod)
    alloc = allocatable(info.node)
    scores = []
    for r, default in (("cpu", 100), ("memory", 200 * 1024 * 1024)):
        cap = alloc.get(r, 0)
        if cap <= 0:
            continue
        used = info.requested.get(r, 0) + (req.get(r) or default)
        scores.append(max(0, (cap - used) * MAX_NODE_SCORE // cap))
    return sum(scores) // len(scores) if scores else 0
