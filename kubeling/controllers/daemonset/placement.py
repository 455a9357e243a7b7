"""Should a DaemonSet's pod run on a node? One pure predicate, used by handlers, planning and status.

As upstream's NodeShouldRunDaemonPod: the template (with the default daemon tolerations added) must
fit the node by nodeName, nodeSelector and required node affinity; NoSchedule and NoExecute taints
must be tolerated to start a pod there, and only NoExecute ones to keep a running one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from kubeling.api.scheduling import (
    NO_EXECUTE,
    NO_SCHEDULE,
    effects,
    find_untolerated_taint,
    pod_matches_node_selector_and_affinity,
)
from kubeling.controllers.daemonset.pods import add_daemon_tolerations

# Status and planning ask once per node per sync: at 5,000 nodes rebuilding the tolerated spec each
# time was most of the controller's CPU. Only stored objects are cached (uid and resourceVersion
# name one immutable version; the template's identity tells apart variants built from it).
_SPEC_CACHE: dict[tuple[str, str, int], tuple[dict[str, Any], dict[str, Any], bytes]] = {}
_SPEC_CACHE_SIZE = 256

# The answer for one node depends only on the node's version and on the spec fields below, so it is
# kept per (placement fields, node uid) until the node changes: a sync then costs a dict lookup per
# node instead of the selector, affinity and taint checks. A DaemonSet's status writes change its
# resourceVersion, not these fields, so the answers survive them.
_PLACEMENT_FIELDS = ("nodeName", "nodeSelector", "affinity", "tolerations")
_DECISIONS: dict[bytes, dict[str, tuple[str, tuple[bool, bool]]]] = {}
_DECISION_SPECS = 32          # distinct placement specs remembered
_DECISION_NODES = 200_000     # answers per spec before that spec's table is started afresh


def _placement_key(spec: dict[str, Any]) -> bytes:
    return orjson.dumps([spec.get(f) for f in _PLACEMENT_FIELDS], option=orjson.OPT_SORT_KEYS)


def _cached_spec(ds: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """The template's spec with the daemon tolerations, and its placement key (None: not cached)."""
    meta = ds.get("metadata") or {}
    template = (ds.get("spec") or {}).get("template") or {}
    key = (meta.get("uid"), meta.get("resourceVersion"), id(template))
    cacheable = bool(key[0] and key[1])
    hit = _SPEC_CACHE.get(key) if cacheable else None  # type: ignore[arg-type]
    if hit is not None and hit[0] is template:
        return hit[1], hit[2]
    spec = dict(template.get("spec") or {})
    spec["tolerations"] = list(spec.get("tolerations") or [])
    add_daemon_tolerations(spec)
    if not cacheable:
        return spec, None
    if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
        _SPEC_CACHE.pop(next(iter(_SPEC_CACHE)))
    placement = _placement_key(spec)
    _SPEC_CACHE[key] = (template, spec, placement)  # type: ignore[index]
    return spec, placement


def _daemon_pod_spec(ds: dict[str, Any]) -> dict[str, Any]:
    return _cached_spec(ds)[0]


def placement_key(ds: dict[str, Any]) -> bytes | None:
    """What of the DaemonSet decides placement, as bytes (equal keys, equal answers on every node);
    None for an object that is not a stored version."""
    return _cached_spec(ds)[1]


def _decide(spec: dict[str, Any], node: dict[str, Any]) -> tuple[bool, bool]:
    node_name = (node.get("metadata") or {}).get("name")
    if spec.get("nodeName") and spec["nodeName"] != node_name:
        return False, False
    if not pod_matches_node_selector_and_affinity(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    if not taints:
        return True, True
    tolerations = spec["tolerations"]
    if find_untolerated_taint(taints, tolerations, effects(NO_SCHEDULE, NO_EXECUTE)) is not None:
        keeps = find_untolerated_taint(taints, tolerations, effects(NO_EXECUTE)) is None
        return False, keeps
    return True, True


def _decisions_for(placement: bytes) -> dict[str, tuple[str, tuple[bool, bool]]]:
    table = _DECISIONS.get(placement)
    if table is None or len(table) > _DECISION_NODES:
        if table is None and len(_DECISIONS) >= _DECISION_SPECS:
            _DECISIONS.pop(next(iter(_DECISIONS)))
        table = _DECISIONS[placement] = {}
    return table


def node_should_run_daemon_pod(node: dict[str, Any], ds: dict[str, Any]) -> tuple[bool, bool]:
    """``(should_run, should_continue_running)`` for ``ds``'s pod on ``node``."""
    spec, placement = _cached_spec(ds)
    meta = node.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if placement is None or not uid or not rv:
        return _decide(spec, node)
    table = _decisions_for(placement)
    hit = table.get(uid)
    if hit is not None and hit[0] == rv:
        return hit[1]
    answer = _decide(spec, node)
    table[uid] = (rv, answer)
    return answer


Placements = Mapping[str, tuple[bool, bool]]


def placements(ds: dict[str, Any], nodes: Iterable[dict[str, Any]]) -> dict[str, tuple[bool, bool]]:
    """node name -> ``node_should_run_daemon_pod``: computed once per sync, read by every step."""
    return {node["metadata"]["name"]: node_should_run_daemon_pod(node, ds) for node in nodes}


def verdict(node: dict[str, Any], ds: dict[str, Any], known: Placements | None) -> tuple[bool, bool]:
    """``node_should_run_daemon_pod`` through a sync's precomputed answers when there are some."""
    if known is not None:
        hit = known.get(node["metadata"]["name"])
        if hit is not None:
            return hit
    return node_should_run_daemon_pod(node, ds)


def placement_fields(node: dict[str, Any]) -> tuple[Any, ...]:
    """What of a node matters for placement: a node update that leaves this equal is ignored."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    conditions = sorted((c.get("type"), c.get("status")) for c in status.get("conditions") or [])
    return (meta.get("labels") or {}, spec.get("taints") or [], bool(spec.get("unschedulable")),
            conditions, status.get("allocatable") or {})
