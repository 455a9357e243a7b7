"""NodeAffinity: spec.nodeSelector and required node affinity must match; preferred terms add score.

PreFilter narrows a pod pinned by ``matchFields metadata.name In [...]`` (every DaemonSet pod)
to those nodes, so placing one daemon pod does not look at every node of a large fleet.
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


def pre_filter(state: CycleState, pod: Obj) -> set[str] | None:
    """Node names the pod is restricted to by matchFields on every term, or None."""
    required = required_node_affinity(pod.get("spec") or {})
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
    if pod_matches_node_selector_and_affinity(pod.get("spec") or {}, info.node):
        return OK
    return unschedulable(NAME, ERR_REASON_POD, resolvable=False)


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    preferred = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution") or []
    if not preferred:
        return 0
    total = sum(int(p.get("weight", 0)) for p in preferred)
    got = sum(int(p.get("weight", 0)) for p in preferred if node_selector_term_matches(p.get("preference") or {}, info.node))
    return MAX_NODE_SCORE * got // total if total else 0
