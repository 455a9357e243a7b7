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
from kubeling.api.timeutil import parse_rfc3339
from kubeling.controllers.daemonset.placement import _daemon_pod_spec, node_should_run_daemon_pod
from kubeling.controllers.daemonset.pods import (
    _ready_condition,
    is_deleting,
    oldest_first_key,
    target_node_name,
)
from kubeling.controllers.daemonset.rolling import max_unavailable_count, scaled_value
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL
from kubeling.controllers.rollout import steps

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


def pod_hash(pod: Obj) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)


def pod_problem(pod: Obj) -> tuple[str, str] | None:
    """A failing container (image pull, crash loop) or an unschedulable pod, as (reason, message)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return status.get("reason") or "Failed", status.get("message") or "pod failed"
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in steps.FAILURE_REASONS:
            return waiting["reason"], waiting.get("message") or f"container {cs.get('name')}: {waiting['reason']}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or ""
    return None


def _ready_since(pod: Obj) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            t = parse_rfc3339(cond.get("lastTransitionTime"))
            return t.timestamp() if t else None
    return None


def _created(pod: Obj) -> float | None:
    t = parse_rfc3339((pod.get("metadata") or {}).get("creationTimestamp"))
    return t.timestamp() if t else None


@dataclass(frozen=True, slots=True)
class _PodFacts:
    """What ``observe`` reads from one pod version; the same for every sync that sees it."""

    node: str | None
    deleting: bool
    hash: str | None
    oldest_key: tuple[int, float, str]
    ready: bool  # podutil.IsPodReady (first Ready condition True)
    ready_transition: float | None  # that condition's lastTransitionTime, for minReadySeconds
    ready_since: float | None
    created: float | None
    problem: tuple[str, str] | None

    def available(self, min_ready: int, now: float) -> bool:
        """is_pod_available without parsing timestamps again."""
        if not self.ready:
            return False
        if not min_ready:
            return True
        return self.ready_transition is not None and self.ready_transition + min_ready < now


# pod uid -> (resourceVersion, facts): a controller syncs a plan after every pod event, and
# re-reading every daemon pod's conditions and timestamps each time was most of its CPU.
_FACTS: dict[str, tuple[str, _PodFacts]] = {}
_FACTS_LIMIT = 200_000


def _facts_of(pod: Obj) -> _PodFacts:
    meta = pod.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if uid and rv:
        hit = _FACTS.get(uid)
        if hit is not None and hit[0] == rv:
            return hit[1]
    cond = _ready_condition(pod)
    ready = cond is not None and cond.get("status") == "True"
    transition = None
    if ready and cond is not None:
        t = parse_rfc3339(cond.get("lastTransitionTime"))
        transition = t.timestamp() if t else None
    facts = _PodFacts(node=target_node_name(pod), deleting=is_deleting(pod), hash=pod_hash(pod),
                      oldest_key=oldest_first_key(pod), ready=ready, ready_transition=transition,
                      ready_since=_ready_since(pod), created=_created(pod), problem=pod_problem(pod))
    if uid and rv:
        if len(_FACTS) >= _FACTS_LIMIT:
            _FACTS.clear()
        _FACTS[uid] = (rv, facts)
    return facts


def observe(plan: Obj | None, ds: Obj, nodes: Iterable[Obj], pods: Iterable[Obj], *, hash_: str,
            now: float) -> Observation:
    """The rollout of revision ``hash_`` of ``ds`` as the nodes show it (see module docstring)."""
    plan = plan or {"spec": {}}
    spec = plan.get("spec") or {}
    deadline = float((spec.get("failurePolicy") or {}).get("progressDeadlineSeconds") or 600)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    nodes = list(nodes)
    by_node: dict[str, list[_PodFacts]] = {}
    names: dict[int, str] = {}
    for pod in pods:
        facts = _facts_of(pod)
        if facts.node is not None and not facts.deleting:
            by_node.setdefault(facts.node, []).append(facts)
            names[id(facts)] = pod["metadata"]["name"]
    eligible = [n for n in nodes if node_should_run_daemon_pod(n, ds)[0]]
    obs = Observation(order=steps.rollout_order(plan, eligible),
                      canaries=steps.count_canaries(plan, eligible))
    current: dict[str, _PodFacts] = {}
    for name, node_pods in by_node.items():
        new = [p for p in node_pods if p.hash == hash_]
        current[name] = node_pods[0] if len(node_pods) == 1 else min(new or node_pods, key=_oldest_key)
        if new:
            obs.updated.add(name)
    eligible_names = set(obs.order)
    obs.updated &= eligible_names
    obs.allowed = steps.allowed_update_nodes(plan if plan.get("metadata") else None, hash_=hash_,
                                             order=obs.order, canaries=obs.canaries, updated=obs.updated)
    unavailable = 0
    for name in obs.order:
        facts = current.get(name)
        if facts is None or not facts.available(min_ready, now):
            unavailable += 1
    limit = max_unavailable_count(ds, len(obs.order))
    if spec.get("maxUnavailable") is not None:
        limit = scaled_value(spec["maxUnavailable"], len(obs.order), round_up=True)
    step_text = _step_text(plan, obs)
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        facts = current.get(name)
        if name not in eligible_names:
            why = placement_reason(node, ds) or ("NotEligible", "the daemon pod should not run on this node")
            obs.reasons.append(NodeReason(name, why[0], why[1], eligible=False))
            continue
        if facts is None:
            obs.reasons.append(NodeReason(name, "NoPod", "no daemon pod yet: the DaemonSet controller creates one"))
            continue
        pod_name = names[id(facts)]
        problem = facts.problem
        available = facts.available(min_ready, now)
        if name in obs.updated:
            if available:
                obs.available_updated.add(name)
                ready, created = facts.ready_since, facts.created
                if ready is not None and created is not None:
                    obs.start_seconds.append(max(ready - created, 0.0))
            else:
                created = facts.created
                if problem is not None and problem[0] in steps.FAILURE_REASONS + ("Failed",):
                    obs.failed[name] = problem
                elif created is not None and now - created > deadline:
                    obs.failed[name] = ("ProgressDeadlineExceeded",
                                        f"pod {pod_name} not available after {int(deadline)}s")
        if problem is not None:
            obs.reasons.append(NodeReason(name, problem[0], f"pod {pod_name}: {problem[1]}"))
        elif not available:
            obs.reasons.append(NodeReason(name, "NotReady", f"pod {pod_name} is not ready yet"))
        elif name in obs.updated:
            obs.reasons.append(NodeReason(name, AVAILABLE, "runs the update revision and is available"))
        elif obs.allowed is not None and name not in obs.allowed:
            obs.reasons.append(NodeReason(name, HELD_BACK, f"held back by RolloutPlan "
                                          f"{(plan.get('metadata') or {}).get('name')} at {step_text}"))
        elif unavailable >= max(limit, 1):
            obs.reasons.append(NodeReason(name, WAITING_MAX_UNAVAILABLE,
                                          f"waiting on maxUnavailable ({limit}): {unavailable} daemon pod(s) "
                                          "unavailable"))
        else:
            obs.reasons.append(NodeReason(name, "Pending", "old revision, next in line for the update"))
    return obs


def _oldest_key(facts: _PodFacts) -> tuple[int, float, str]:
    return facts.oldest_key


def _step_text(plan: Obj, obs: Observation) -> str:
    status = plan.get("status") or {}
    total = len(steps.steps_of(plan))
    step = int(status.get("currentStep") or 0)
    allowed = steps.step_count(plan, step, eligible=len(obs.order), canaries=obs.canaries)
    return f"step {step + 1}/{total} ({allowed} of {len(obs.order)} nodes)"
