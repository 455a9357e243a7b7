"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule ones lower the score."""

from __future__ import annotations

from kubeling.api.scheduling import effects, find_untolerated_taint, taint_tolerated
from kubeling.scheduler.framework import MAX_NODE_SCORE, OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "TaintToleration"
_HARD = effects("NoSchedule", "NoExecute")


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    taints = (info.node.get("spec") or {}).get("taints")
    if not taints:
        return OK
    taint = find_untolerated_taint(taints, (pod.get("spec") or {}).get("tolerations"), _HARD)
    if taint is None:
        return OK
    return unschedulable(NAME, f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",
                         resolvable=False)


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    """The number of PreferNoSchedule taints the pod does not tolerate (fewer is better, see normalize)."""
    taints = (info.node.get("spec") or {}).get("taints")
    if not taints:
        return 0
    tolerations = state.get("prefer_tolerations")
    if tolerations is None:
        tolerations = state["prefer_tolerations"] = [
            t for t in (pod.get("spec") or {}).get("tolerations") or [] if t.get("effect") in (None, "", "PreferNoSchedule")]
    return sum(1 for t in taints if t.get("effect") == "PreferNoSchedule" and not taint_tolerated(t, tolerations))


def normalize(scores: list[int]) -> list[int]:
    """Upstream's reverse DefaultNormalizeScore: the node with most intolerable taints scores 0."""
    worst = max(scores, default=0)
    if worst == 0:
        return [MAX_NODE_SCORE] * len(scores)
    return [MAX_NODE_SCORE - s * MAX_NODE_SCORE // worst for s in scores]
