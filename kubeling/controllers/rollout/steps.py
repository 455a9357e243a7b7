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


def _has_canaries(plan: Obj) -> bool:
    return not label_selector_is_empty((plan.get("spec") or {}).get("canaryNodes"))


def count_canaries(plan: Obj, eligible: Iterable[Obj]) -> int:
    """How many of ``eligible`` are canary nodes (0 at once without a canary selector)."""
    return sum(1 for n in eligible if is_canary(plan, n)) if _has_canaries(plan) else 0


def _natural_name_key(node: Obj) -> tuple[Any, ...]:
    return natural_key(node["metadata"]["name"])


def rollout_order(plan: Obj, eligible: Iterable[Obj]) -> list[str]:
    """Names of the eligible nodes in the plan's update order (see module docstring)."""
    nodes = sorted(eligible, key=_natural_name_key)
    canary: list[str] = []
    rest: list[Obj] = nodes
    if _has_canaries(plan):
        flags = [is_canary(plan, n) for n in nodes]
        canary = [_name(n) for n, c in zip(nodes, flags, strict=True) if c]
        rest = [n for n, c in zip(nodes, flags, strict=True) if not c]
    key = (plan.get("spec") or {}).get("topologyKey")
    if not key:
        return canary + [_name(n) for n in rest]
    groups: dict[str, list[str]] = {}
    for n in rest:
        value = _labels(n).get(key)
        groups.setdefault("\x00" if value is None else value, []).append(_name(n))
    order = sorted(groups, key=lambda v: (v == "\x00", v))
    spread: list[str] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        spread.extend(groups[v][i] for v in order if i < len(groups[v]))
    return canary + spread


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
    status = plan.get("status") or {}
    stable = status.get("stableRevision")
    if not stable or stable == hash_:
        return None
    if status.get("updateRevision") != hash_:
        return set()
    if status.get("phase") == "Succeeded":
        return None
    if status.get("phase") == "RolledBack":
        return set()  # the template is (about to be) back on the stable revision
    count = step_count(plan, int(status.get("currentStep") or 0), eligible=len(order), canaries=canaries)
    allowed = set(order[:count])
    if frozen(plan):
        allowed &= updated
    return allowed
