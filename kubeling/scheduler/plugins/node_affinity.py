"""NodeAffinity: spec.nodeSelector and required node affinity must match; preferred terms add score.

PreFilter narrows a pod pinned by ``matchFields metadata.name In [...]`` (every DaemonSet pod)
to those nodes, so placing one daemon pod does not look at every node of a large fleet; the
nodes left out count as "didn't satisfy plugin(s) [NodeAffinity]" as upstream reports them.
"""

from __future__ import annotations

from kubeling.api.scheduling import (
    node_selector_term_matches,
    pod_matches_node_selector_and_affinity,
    required_node_affinity,
)
from kubeling.scheduler.framework import MAX_NODE_SCORE, OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "NodeAffinity"
ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"
ERR_REASON_PREFILTER = f"node(s) didn't satisfy plugin(s) [{NAME}]"
ERR_REASON_CONFLICT = "pod affinity terms conflict"


def pre_filter(state: CycleState, pod: Obj) -> set[str] | None:
    """Node names the pod is restricted to by matchFields on every term, or None."""
    spec = pod.get("spec") or {}
    state["constrained"] = bool(spec.get("nodeSelector") or required_node_affinity(spec))
    required = required_node_affinity(spec)
    if not required:
        return None
    names: set[str] = set()
    for term in required.get("nodeSelectorTerms") or []:
        fields = [f for f in term.get("matchFields") or []
                  if f.get("key") == "metadata.name" and f.get("operator") == "In"]
        if not fields:
            return None  # a term without a name restriction may match any node
        term_names = set(fields[0].get("values") or [])
        for f in fields[1:]:
            term_names &= set(f.get("values") or [])
        names |= term_names
    return names


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    if state.get("constrained") is False:
        return OK
    if pod_matches_node_selector_and_affinity(pod.get("spec") or {}, info.node):
        return OK
    return unschedulable(NAME, ERR_REASON_POD, resolvable=False)


def _preferred(pod: Obj) -> list[Obj]:
    return (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution") or []


def pre_score(state: CycleState, pod: Obj) -> bool:
    return bool(_preferred(pod))


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    """The summed weights of the preferred terms the node matches (normalized afterwards)."""
    return sum(int(p.get("weight", 0)) for p in _preferred(pod)
               if node_selector_term_matches(p.get("preference") or {}, info.node))


def normalize(scores: list[int]) -> list[int]:
    best = max(scores, default=0)
    if best == 0:
        return scores
    return [s * MAX_NODE_SCORE // best for s in scores]
