"""The RollingUpdate strategy: which old pods to delete and where to surge new ones (upstream's
``rollingUpdate`` in pkg/controller/daemon/update.go), as a pure function.

Without surge, old pods are deleted only while fewer than maxUnavailable daemon pods are
unavailable (unavailable old pods first, they cost nothing); ``plan`` then creates their
replacements. With surge, a new pod is created beside an old one (at most maxSurge at a time,
immediately where the old one is unavailable) and the old pod goes once the new one is available.
OnDelete does nothing here: pods are replaced only when someone deletes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Set
from typing import Any

from kubeling.controllers.daemonset.placement import Placements, verdict
from kubeling.controllers.daemonset.plan import Actions
from kubeling.controllers.daemonset.pods import (
    Pod,
    is_deleting,
    is_pod_available,
    is_pod_updated,
    pod_name,
    template_generation,
)


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        try:
            return int(text)
        except ValueError as exc:
            raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage") from exc
    percent = int(text[:-1])
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def _rolling_params(ds: dict[str, Any]) -> dict[str, Any] | None:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def max_unavailable_count(ds: dict[str, Any], desired: int) -> int:
    params = _rolling_params(ds)
    return 0 if params is None else scaled_value(params.get("maxUnavailable"), desired, round_up=True)


def max_surge_count(ds: dict[str, Any], desired: int) -> int:
    params = _rolling_params(ds)
    return 0 if params is None else scaled_value(params.get("maxSurge"), desired, round_up=True)


def find_updated_pods_on_node(ds: dict[str, Any], pods: Iterable[Pod], hash_: str
                              ) -> tuple[Pod | None, Pod | None, bool]:
    """``(new_pod, old_pod, ok)``; not ok when a node holds two new or two old live pods."""
    return _find_updated(pods, hash_, template_generation(ds))


def _find_updated(pods: Iterable[Pod], hash_: str, generation: int | None) -> tuple[Pod | None, Pod | None, bool]:
    new = old = None
    for pod in pods:
        if is_deleting(pod):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update(ds: dict[str, Any], nodes: Iterable[dict[str, Any]], by_node: dict[str, list[Pod]], *,
                   hash_: str, now: float, allowed: Set[str] | None = None,
                   max_unavailable_override: int | str | None = None,
                   placements: Placements | None = None) -> Actions:
    """Deletions (and, with surge, creations) for one step of a rolling update.

    ``allowed`` (from a RolloutPlan, see ``holdback``) limits which nodes may be moved to the new
    revision; None allows all, as upstream. ``max_unavailable_override`` replaces the DaemonSet's
    own maxUnavailable (a plan's setting).
    """
    if _rolling_params(ds) is None:
        return Actions()  # OnDelete: replaced only when someone deletes them
    nodes_by_name = {n["metadata"]["name"]: n for n in nodes}
    by_node = dict(by_node)
    desired = 0
    for name, node in nodes_by_name.items():
        if verdict(node, ds, placements)[0]:
            desired += 1
            by_node.setdefault(name, [])
    max_unavailable = max_unavailable_count(ds, desired)
    if max_unavailable_override is not None and _rolling_params(ds) is not None:
        max_unavailable = scaled_value(max_unavailable_override, desired, round_up=True)
    max_surge = max_surge_count(ds, desired)
    if desired > 0 and max_unavailable == 0 and max_surge == 0:
        max_unavailable = 1  # an impossible configuration falls back to upstream's default
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    generation = template_generation(ds)
    actions = Actions()

    def available(pod: Pod) -> bool:
        return is_pod_available(pod, min_ready, now)

    if max_surge == 0:
        num_unavailable = 0
        replacements: list[str] = []
        candidates: list[str] = []
        for node_name, pods in sorted(by_node.items()):
            new, old, ok = _find_updated(pods, hash_, generation)
            if not ok or (new is None) == (old is None):
                # duplicates, nothing yet, or an old/new pair: the manage step sorts it out
                num_unavailable += 1
            elif new is not None:
                if not available(new):
                    num_unavailable += 1
            elif allowed is not None and node_name not in allowed:
                num_unavailable += not available(old)  # held back: keeps its old pod
            elif not available(old):
                replacements.append(pod_name(old))
            elif num_unavailable < max_unavailable:
                candidates.append(pod_name(old))
        remaining = min(max(max_unavailable - num_unavailable, 0), len(candidates))
        actions.delete_pods = replacements + candidates[:remaining]
        return actions

    delete_now: list[str] = []
    should_not_run: list[str] = []
    candidate_nodes: list[str] = []
    allowed_nodes: list[str] = []
    num_surge = 0
    num_available = 0
    for node_name, pods in sorted(by_node.items()):
        new, old, ok = _find_updated(pods, hash_, generation)
        if not ok:
            num_surge += 1
            continue
        if old is not None:
            num_available += available(old)
        elif new is not None:
            num_available += available(new)
        if old is None:
            continue
        if allowed is not None and node_name not in allowed and new is None:
            continue  # held back by a RolloutPlan: keeps its old pod
        node = nodes_by_name.get(node_name)
        if new is None:
            should_run = node is not None and verdict(node, ds, placements)[0]
            if not available(old):
                if not should_run:
                    delete_now.append(pod_name(old))
                else:
                    allowed_nodes.append(node_name)
            elif not should_run:
                should_not_run.append(pod_name(old))
            elif num_surge < max_surge:
                candidate_nodes.append(node_name)
        elif not available(new):
            num_surge += 1
        else:
            delete_now.append(pod_name(old))
    # Full availability is what surge promises: an old pod on a node the DaemonSet left is deleted
    # only once enough pods elsewhere are available.
    deletable = min(max(num_available - desired, 0), len(should_not_run))
    delete_now.extend(should_not_run[:deletable])
    remaining = min(max(max_surge - num_surge, 0), len(candidate_nodes))
    actions.delete_pods = delete_now
    actions.create_on_nodes = allowed_nodes + candidate_nodes[:remaining]
    return actions
