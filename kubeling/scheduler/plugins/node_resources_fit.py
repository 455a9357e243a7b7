"""NodeResourcesFit: the pod's requests must fit in what the node has left; LeastAllocated scoring."""

from __future__ import annotations

from kubeling.scheduler.framework import (
    DEFAULT_MEMORY,
    DEFAULT_MILLI_CPU,
    MAX_NODE_SCORE,
    OK,
    CycleState,
    NodeInfo,
    Obj,
    Status,
    amount,
    unschedulable,
)

NAME = "NodeResourcesFit"
SCORED = ("cpu", "memory")  # upstream's default scoring resources, weight 1 each


def _sum_containers(spec: Obj, *, nonzero: bool) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        reqs = (c.get("resources") or {}).get("requests") or {}
        for r, v in reqs.items():
            total[r] = total.get(r, 0) + amount(r, v)
        if nonzero:
            if "cpu" not in reqs:
                total["cpu"] = total.get("cpu", 0) + DEFAULT_MILLI_CPU
            if "memory" not in reqs:
                total["memory"] = total.get("memory", 0) + DEFAULT_MEMORY
    for c in spec.get("initContainers") or []:
        reqs = (c.get("resources") or {}).get("requests") or {}
        for r, v in reqs.items():
            total[r] = max(total.get(r, 0), amount(r, v))
    for r, v in (spec.get("overhead") or {}).items():
        total[r] = total.get(r, 0) + amount(r, v)
    return total


def pod_requests(pod: Obj) -> dict[str, int]:
    """Effective requests as upstream: sum of containers, at least each init container, plus overhead."""
    return _sum_containers(pod.get("spec") or {}, nonzero=False)


def nonzero_requests(pod: Obj) -> dict[str, int]:
    """cpu and memory with upstream's defaults (100m, 200Mi) for containers that request none."""
    total = _sum_containers(pod.get("spec") or {}, nonzero=True)
    return {"cpu": total.get("cpu", 0), "memory": total.get("memory", 0)}


def allocatable(node: Obj) -> dict[str, int]:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return {r: amount(r, v) for r, v in alloc.items()}


def _state(state: CycleState, pod: Obj) -> dict[str, int]:
    req = state.get("requests")
    if req is None:
        req = state["requests"] = {r: v for r, v in pod_requests(pod).items() if v > 0}
    return req


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    req = _state(state, pod)
    alloc = info.allocatable
    reasons = []
    if len(info.pods) + 1 > alloc.get("pods", 0):
        reasons.append("Too many pods")
    for r, want in req.items():
        if info.requested.get(r, 0) + want > alloc.get(r, 0):
            reasons.append(f"Insufficient {r}")
    if reasons:
        return unschedulable(NAME, *reasons)
    return OK


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    """LeastAllocated: the share of cpu and memory left free after placing the pod (non-zero requests)."""
    req = state.get("nonzero")
    if req is None:
        req = state["nonzero"] = nonzero_requests(pod)
    total = 0
    for r in SCORED:
        cap = info.allocatable.get(r, 0)
        used = info.nonzero.get(r, 0) + req[r]
        if cap > 0 and used <= cap:
            total += (cap - used) * MAX_NODE_SCORE // cap
    return total // len(SCORED)
