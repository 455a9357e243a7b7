"""The pure arithmetic of a RolloutPlan: node order, how many nodes each step allows, failures.

Both the DaemonSet controller (which holds nodes back) and the RolloutPlan controller (which moves
the step forward) ask these functions, so they always agree on which nodes a step covers. The
order is: canary nodes first, then the other eligible nodes spread round-robin over the values of
``topologyKey`` (values sorted; nodes without the label form their own group, last), so the first N
nodes of any step are spread evenly over zones. Names sort naturally (``node-2`` before ``node-10``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from kubeling.api.scheduling import label_selector_is_empty, label_selector_matches
from kubeling.controllers.daemonset.rolling import scaled_value

Obj = dict[str, Any]
_DIGITS = re.compile(r"(\d+)")

# container waiting reasons that mean an updated pod will not become available by itself
FAILURE_REASONS = ("ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "ErrImageNeverPull")


def _labels(node: Obj) -> dict[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _name(node: Obj) -> str:
    return node["metadata"]["name"]


@functools.lru_cache(maxsize=65536)  # node names repeat on every sync of every plan
def natural_key(name: str) -> tuple[Any, ...]:
    """``node-2`` before ``node-10``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))


def is_canary(plan: Obj, node: Obj) -> bool:
    selector = (plan.get("spec") or {}).get("canaryNodes")
    return not label_selector_is_empty(selector) and label_selector_matches(selector, _labels(node))


def has_canaries(plan: Obj) -> bool:
    """Whether ``plan`` names canary nodes (an empty selector names none)."""
    return not label_selector_is_empty((plan.get("spec") or {}).get("canaryNodes"))


def count_canaries(plan: Obj, eligible: Iterable[Obj]) -> int:
    """How many of ``eligible`` are canary nodes (0 at once without a canary selector)."""
    return sum(1 for n in eligible if is_canary(plan, n)) if has_canaries(plan) else 0


OrderFacts = tuple[str, bool, str | None]  # (name, canary, topology value): all the order reads of a node


def order_facts(plan: Obj, node: Obj) -> OrderFacts:
    """What of ``node`` decides its place in ``plan``'s order (see :func:`order_from_facts`)."""
    spec = plan.get("spec") or {}
    key = spec.get("topologyKey")
    labels = _labels(node)
    return (_name(node), has_canaries(plan) and is_canary(plan, node), labels.get(key) if key else None)


def _natural_fact_key(facts: OrderFacts) -> tuple[Any, ...]:
    return natural_key(facts[0])


def order_from_facts(facts: Iterable[OrderFacts], *, topology: bool) -> list[str]:
    """Names in update order from each eligible node's :func:`order_facts` (see module docstring).

    ``topology`` says whether the plan has a ``topologyKey``; ties of the natural name order keep
    the order of ``facts``.
    """
    nodes = sorted(facts, key=_natural_fact_key)
    canary = [f[0] for f in nodes if f[1]]
    rest = [f for f in nodes if not f[1]] if canary else nodes
    if not topology:
        return canary + [f[0] for f in rest]
    groups: dict[str, list[str]] = {}
    for name, _, value in rest:
        groups.setdefault("\x00" if value is None else value, []).append(name)
    order = sorted(groups, key=lambda v: (v == "\x00", v))
    spread: list[str] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        spread.extend(groups[v][i] for v in order if i < len(groups[v]))
    return canary + spread


def rollout_order(plan: Obj, eligible: Iterable[Obj]) -> list[str]:
    """Names of the eligible nodes in the plan's update order (see module docstring)."""
    return order_from_facts([order_facts(plan, n) for n in eligible],
                            topology=bool((plan.get("spec") or {}).get("topologyKey")))


def steps_of(plan: Obj) -> list[Obj]:
    return list((plan.get("spec") or {}).get("steps") or []) or [{"nodes": "100%"}]


def step_count(plan: Obj, step: int, *, eligible: int, canaries: int) -> int:
    """How many of ``eligible`` nodes may carry the update revision at ``step`` (0-based)."""
    steps = steps_of(plan)
    step = min(max(step, 0), len(steps) - 1)
    count = max(scaled_value(steps[step].get("nodes"), eligible, round_up=True), canaries)  # canaries go in step 1
    return min(count, eligible)


def max_failed(plan: Obj, eligible: int) -> int:
    policy = (plan.get("spec") or {}).get("failurePolicy") or {}
    return max(scaled_value(policy.get("maxFailedNodes", 0), eligible, round_up=False), 0)


def targets(plan: Obj, ds: Obj) -> bool:
    """Whether ``plan`` targets ``ds`` (same namespace, kind DaemonSet, same name)."""
    ref = (plan.get("spec") or {}).get("targetRef") or {}
    return (ref.get("kind") == "DaemonSet" and ref.get("name") == ds["metadata"]["name"]
            and (plan.get("metadata") or {}).get("namespace") == ds["metadata"].get("namespace")
            and not (plan.get("metadata") or {}).get("deletionTimestamp"))


def plan_for(ds: Obj, plans: Iterable[Obj]) -> Obj | None:
    """The plan governing ``ds``: the first by name among those targeting it."""
    mine = sorted((p for p in plans if targets(p, ds)), key=lambda p: p["metadata"]["name"])
    return mine[0] if mine else None


def frozen(plan: Obj) -> bool:
    """A paused or failed rollout updates no further node, even within its step."""
    status = plan.get("status") or {}
    return bool((plan.get("spec") or {}).get("paused")) or status.get("phase") == "Failed"


def _status_hold(plan: Obj, hash_: str) -> tuple[bool, set[str] | None]:
    """``(True, answer)`` when the plan's status alone decides :func:`allowed_update_nodes`,
    ``(False, None)`` when the step's share of the order does."""
    status = plan.get("status") or {}
    stable = status.get("stableRevision")
    if not stable or stable == hash_:
        return True, None
    if status.get("updateRevision") != hash_:
        return True, set()
    if status.get("phase") == "Succeeded":
        return True, None
    if status.get("phase") == "RolledBack":
        return True, set()  # the template is (about to be) back on the stable revision
    return False, None


def holds_by_step(plan: Obj | None, hash_: str) -> bool:
    """Whether :func:`allowed_update_nodes` reads ``order`` (and ``updated`` when :func:`frozen`):
    otherwise the plan's status alone decides, and the caller may pass empty ones."""
    return plan is not None and not _status_hold(plan, hash_)[0]


def allowed_update_nodes(plan: Obj | None, *, hash_: str, order: list[str], canaries: int,
                         updated: set[str]) -> set[str] | None:
    """Nodes that may carry revision ``hash_`` now, or None when the plan holds nothing back.

    ``order`` is :func:`rollout_order` over the eligible nodes and ``updated`` the nodes already
    running ``hash_``. No plan, no stable revision yet, or the template being the stable revision
    (a finished rollout or a rollback) hold nothing back. A revision the plan controller has not
    acknowledged yet is held back everywhere; a paused or failed rollout goes no further than the
    nodes already updated.
    """
    if plan is None:
        return None
    decided, answer = _status_hold(plan, hash_)
    if decided:
        return answer
    status = plan.get("status") or {}
    count = step_count(plan, int(status.get("currentStep") or 0), eligible=len(order), canaries=canaries)
    allowed = set(order[:count])
    if frozen(plan):
        allowed &= updated
    return allowed
