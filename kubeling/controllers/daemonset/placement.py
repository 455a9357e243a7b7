"""Should a DaemonSet's pod run on a node? One pure predicate, used by handlers, planning and status.

As upstream's NodeShouldRunDaemonPod: the template (with the default daemon tolerations added) must
fit the node by nodeName, nodeSelector and required node affinity; NoSchedule and NoExecute taints
must be tolerated to start a pod there, and only NoExecute ones to keep a running one.
"""

from __future__ import annotations

from typing import Any

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
_SPEC_CACHE: dict[tuple[str, str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
_SPEC_CACHE_SIZE = 256


def _daemon_pod_spec(ds: dict[str, Any]) -> dict[str, Any]:
    meta = ds.get("metadata") or {}
    template = (ds.get("spec") or {}).get("template") or {}
    key = (meta.get("uid"), meta.get("resourceVersion"), id(template))
    hit = _SPEC_CACHE.get(key) if key[0] and key[1] else None  # type: ignore[arg-type]
    if hit is not None and hit[0] is template:
        return hit[1]
    spec = dict(template.get("spec") or {})
    spec["tolerations"] = list(spec.get("tolerations") or [])
    add_daemon_tolerations(spec)
    if key[0] and key[1]:
        if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
            _SPEC_CACHE.pop(next(iter(_SPEC_CACHE)))
        _SPEC_CACHE[key] = (template, spec)  # type: ignore[index]
    return spec


def node_should_run_daemon_pod(node: dict[str, Any], ds: dict[str, Any]) -> tuple[bool, bool]:
    """``(should_run, should_continue_running)`` for ``ds``'s pod on ``node``."""
    spec = _daemon_pod_spec(ds)
    node_name = (node.get("metadata") or {}).get("name")
    if spec.get("nodeName") and spec["nodeName"] != node_name:
        return False, False
    if not pod_matches_node_selector_and_affinity(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = spec["tolerations"]
    if find_untolerated_taint(taints, tolerations, effects(NO_SCHEDULE, NO_EXECUTE)) is not None:
        keeps = find_untolerated_taint(taints, tolerations, effects(NO_EXECUTE)) is None
        return False, keeps
    return True, True


def placement_fields(node: dict[str, Any]) -> tuple[Any, ...]:
    """What of a node matters for placement: a node update that leaves this equal is ignored."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    conditions = sorted((c.get("type"), c.get("status")) for c in status.get("conditions") or [])
    return (meta.get("labels") or {}, spec.get("taints") or [], bool(spec.get("unschedulable")),
            conditions, status.get("allocatable") or {})
