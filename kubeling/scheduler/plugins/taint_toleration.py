"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule ones lower the score."""

from __future__ import annotations

from kubeling.api.scheduling import effects, find_untolerated_taint, taint_tolerated
from kubeling.scheduler.framework import MAX_NODE_SCORE, OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "TaintToleration"
_HARD = effects("NoSchedule", "NoExecute")


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    taint = find_untolerated_taint((info.node.get("spec") or {}).get("taints"),
                                   (pod.get("spec") or {}).get("tolerations"), _HARD)
    if taint is None:
        return OK
    return unschedulable(NAME, f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}",
                         resolvable=False)


def score(state: CycleState, pod: Obj, info: NodeInfo) -> int:
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                   if t.get("effect") in (None, "", "PreferNoSchedule")]
    count = sum(1 for t in (info.node.get("spec") or {}).get("taints") or []
                if t.get("effect") == "PreferNoSchedule" and not taint_tolerated(t, tolerations))
    # fewer intolerable PreferNoSchedule taints is better; normalised against a small maximum
    return max(0, MAX_NODE_SCORE - count * 25)
