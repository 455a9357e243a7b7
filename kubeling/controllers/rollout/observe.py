"""What a rollout looks like on the nodes, and why each node is (or is not) where it should be.

``observe`` reads a plan, its DaemonSet, the nodes and the daemon pods (plain dicts from listers or
from the API) and returns an :class:`Observation`: the eligible nodes in plan order, which carry
the update revision, which of those are available, which failed and why, and a per-node reason
(:class:`NodeReason`) in upstream's words where upstream has them. The controller stores the
problem reasons in the plan status (``status.why``) and ``kubeling why`` prints them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubeling.api.scheduling import (
    NO_EXECUTE,
    NO_SCHEDULE,
    effects,
    find_untolerated_taint,
    node_selector_labels_match,
    node_selector_term_matches,
    required_node_affinity,
)
from kubeling.controllers.daemonset.placement import _daemon_pod_spec
from kubeling.controllers.daemonset.rolling import max_unavailable_count, scaled_value
from kubeling.controllers.rollout import nodeorder, podview, steps

Obj = dict[str, Any]

AVAILABLE = "Available"
HELD_BACK = "HeldBack"
WAITING_MAX_UNAVAILABLE = "WaitingOnMaxUnavailable"


@dataclass(frozen=True)
class NodeReason:
    node: str
    reason: str
    message: str
    eligible: bool = True

    def as_dict(self) -> Obj:
        return {"node": self.node, "reason": self.reason, "message": self.message}


@dataclass
class Observation:
    order: list[str] = field(default_factory=list)  # eligible nodes, plan order
    canaries: int = 0
    updated: set[str] = field(default_factory=set)
    available_updated: set[str] = field(default_factory=set)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (reason, message)
    allowed: set[str] | None = None
    reasons: list[NodeReason] = field(default_factory=list)
    start_seconds: list[float] = field(default_factory=list)  # observed pod creation-to-ready times


def placement_reason(node: Obj, ds: Obj) -> tuple[str, str] | None:
    """Why ``ds``'s pod may not run on ``node`` (None when it may), in the scheduler's words."""
    spec = _daemon_pod_spec(ds)
    name = node["metadata"]["name"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return "NodeNameMismatch", "node(s) didn't match the requested node name"
    if not node_selector_labels_match(spec.get("nodeSelector"), node):
        labels = (node.get("metadata") or {}).get("labels") or {}
        missing = [f"{k}={v}" for k, v in (spec.get("nodeSelector") or {}).items() if labels.get(k) != v]
        return ("NodeSelectorMismatch",
                f"node(s) didn't match Pod's node affinity/selector: nodeSelector {', '.join(missing)}")
    required = required_node_affinity(spec)
    if required is not None:
        terms = required.get("nodeSelectorTerms") or []
        if not any(node_selector_term_matches(t, node) for t in terms):
            which = "; ".join(f"term {i}: {_term_text(t)}" for i, t in enumerate(terms))
            return ("NodeAffinityMismatch",
                    f"node(s) didn't match Pod's node affinity/selector: no required term matches ({which})")
    taint = find_untolerated_taint((node.get("spec") or {}).get("taints"), spec["tolerations"],
                                   effects(NO_SCHEDULE, NO_EXECUTE))
    if taint is not None:
        return ("UntoleratedTaint",
                f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}")
    return None


def _term_text(term: Obj) -> str:
    parts = [f"{r.get('key')} {r.get('operator')} {r.get('values') or ''}".strip()
             for r in (term.get("matchExpressions") or []) + (term.get("matchFields") or [])]
    return ", ".join(parts) or "<empty>"


def observe(plan: Obj | None, ds: Obj, nodes: Iterable[Obj], pods: Iterable[Obj] | podview.PodView, *,
            hash_: str, now: float, why_limit: int | None = None, start_times: bool = True) -> Observation:
    """The rollout of revision ``hash_`` of ``ds`` as the nodes show it (see module docstring).

    ``pods`` are the daemon pods, or a :class:`podview.PodView` of them at ``hash_`` kept by the
    caller. What only ``kubeling`` commands read can be left out, as the controller does: with
    ``why_limit``, ``reasons`` holds only the first ``why_limit`` problems (eligible nodes not
    Available, by node name: what the plan's ``status.why`` shows); without ``start_times``,
    ``start_seconds`` stays empty.
    """
    plan = plan or {"spec": {}}
    spec = plan.get("spec") or {}
    deadline = float((spec.get("failurePolicy") or {}).get("progressDeadlineSeconds") or 600)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    nodes = list(nodes)
    ordered = nodeorder.eligible_in_order(plan, ds, nodes)
    obs = Observation(order=list(ordered.order), canaries=ordered.canaries)
    view = pods if isinstance(pods, podview.PodView) else podview.PodView.of(pods, hash_)
    if view.hash != hash_:
        raise ValueError(f"a view of revision {view.hash} observed for revision {hash_}")
    current = view.current
    eligible_names = ordered.eligible
    obs.updated = view.updated & eligible_names
    obs.allowed = steps.allowed_update_nodes(plan if plan.get("metadata") else None, hash_=hash_,
                                             order=obs.order, canaries=obs.canaries, updated=obs.updated)
    if not min_ready:  # available is ready; daemon pods run on eligible nodes, as a rule
        ready = view.ready
        unavailable = len(obs.order) - (len(ready) if ready <= eligible_names else len(ready & eligible_names))
    else:
        unavailable = sum(1 for name in obs.order
                          if (facts := current.get(name)) is None or not facts.available(min_ready, now))
    limit = max_unavailable_count(ds, len(obs.order))
    if spec.get("maxUnavailable") is not None:
        limit = scaled_value(spec["maxUnavailable"], len(obs.order), round_up=True)
    _observe_updated(obs, view, min_ready=min_ready, deadline=deadline, now=now, start_times=start_times)
    names = ordered.names
    by_name: dict[str, Obj] = {}  # filled when an ineligible node's reason is asked
    step_text: list[str] = []  # computed at the first node held back

    def held_back(name: str) -> NodeReason:
        if not step_text:
            step_text.append(_step_text(plan, obs))
        return NodeReason(name, HELD_BACK, f"held back by RolloutPlan {(plan.get('metadata') or {}).get('name')} "
                                           f"at {step_text[0]}")

    for name in names:
        if why_limit is not None and len(obs.reasons) >= why_limit:
            break
        facts = current.get(name)
        if name not in eligible_names:
            if why_limit is None:
                by_name = by_name or {node["metadata"]["name"]: node for node in nodes}
                why = placement_reason(by_name[name], ds) or ("NotEligible",
                                                              "the daemon pod should not run on this node")
                obs.reasons.append(NodeReason(name, why[0], why[1], eligible=False))
            continue
        if facts is None:
            obs.reasons.append(NodeReason(name, "NoPod", "no daemon pod yet: the DaemonSet controller creates one"))
            continue
        problem = facts.problem
        if problem is not None:
            obs.reasons.append(NodeReason(name, problem[0], f"pod {facts.name}: {problem[1]}"))
        elif not facts.available(min_ready, now):
            obs.reasons.append(NodeReason(name, "NotReady", f"pod {facts.name} is not ready yet"))
        elif name in obs.updated:
            if why_limit is None:
                obs.reasons.append(NodeReason(name, AVAILABLE, "runs the update revision and is available"))
        elif obs.allowed is not None and name not in obs.allowed:
            obs.reasons.append(held_back(name))
        elif unavailable >= max(limit, 1):
            obs.reasons.append(NodeReason(name, WAITING_MAX_UNAVAILABLE,
                                          f"waiting on maxUnavailable ({limit}): {unavailable} daemon pod(s) "
                                          "unavailable"))
        else:
            obs.reasons.append(NodeReason(name, "Pending", "old revision, next in line for the update"))
    return obs


def _observe_updated(obs: Observation, view: podview.PodView, *, min_ready: int, deadline: float, now: float,
                     start_times: bool) -> None:
    """Which of the eligible nodes running the update revision are available, which failed, and
    (``start_times``) their pods' start-up times in node name order."""
    if min_ready:
        obs.available_updated = {n for n in obs.updated if view.current[n].available(min_ready, now)}
    else:
        obs.available_updated = obs.updated & view.ready
    if start_times:
        for name in sorted(obs.available_updated):
            facts = view.current[name]
            ready, created = facts.ready_since, facts.created
            if ready is not None and created is not None:
                obs.start_seconds.append(max(ready - created, 0.0))
    for name in sorted(obs.updated - obs.available_updated):
        facts = view.current[name]
        problem, created = facts.problem, facts.created
        if problem is not None and problem[0] in steps.FAILURE_REASONS + ("Failed",):
            obs.failed[name] = problem
        elif created is not None and now - created > deadline:
            obs.failed[name] = ("ProgressDeadlineExceeded", f"pod {facts.name} not available after {int(deadline)}s")


def _step_text(plan: Obj, obs: Observation) -> str:
    status = plan.get("status") or {}
    total = len(steps.steps_of(plan))
    step = int(status.get("currentStep") or 0)
    allowed = steps.step_count(plan, step, eligible=len(obs.order), canaries=obs.canaries)
    return f"step {step + 1}/{total} ({allowed} of {len(obs.order)} nodes)"
