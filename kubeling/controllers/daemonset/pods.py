"""Daemon pods: built from the DaemonSet's template, and read back (target node, readiness, age).

A daemon pod is the template plus upstream's additions: the labels ``controller-revision-hash``
and ``pod-template-generation``, the default daemon tolerations (so node conditions never evict or
block it), an ownerReference, ``generateName: <ds>-`` and a required node affinity pinning it to
its node by ``metadata.name``. The scheduler binds it; ``nodeName`` is never set here.
"""

from __future__ import annotations

from typing import Any

import orjson

from kubeling.api.scheduling import OBJECT_NAME_FIELD, add_or_update_toleration
from kubeling.api.timeutil import parse_rfc3339
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL, controller_ref

TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

Pod = dict[str, Any]

_ALWAYS_TOLERATED = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
_HOST_NETWORK_TOLERATED = (("node.kubernetes.io/network-unavailable", "NoSchedule"),)


def _json_copy(obj: Any) -> Any:
    """A deep copy of JSON-shaped data (an orjson round trip is several times copy.deepcopy's speed,
    and a burst creates up to 250 pods per sync)."""
    return orjson.loads(orjson.dumps(obj))


def add_daemon_tolerations(spec: dict[str, Any]) -> None:
    """upstream's AddOrUpdateDaemonPodTolerations, in its order."""
    wanted = _ALWAYS_TOLERATED + (_HOST_NETWORK_TOLERATED if spec.get("hostNetwork") else ())
    for key, effect in wanted:
        add_or_update_toleration(spec, {"key": key, "operator": "Exists", "effect": effect})


def template_generation(ds: dict[str, Any]) -> int | None:
    """The template generation the API server records on the DaemonSet (None if absent or bad)."""
    raw = ((ds.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def daemon_pod_template(ds: dict[str, Any], *, generation: int | None, hash_: str) -> dict[str, Any]:
    """upstream's CreatePodTemplate: template + daemon tolerations + generation and hash labels."""
    template = _json_copy((ds.get("spec") or {}).get("template") or {})
    spec = template.setdefault("spec", {})
    add_daemon_tolerations(spec)
    labels = (template.setdefault("metadata", {})).setdefault("labels", {})
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(generation)
    if hash_:
        labels[CONTROLLER_REVISION_HASH_LABEL] = hash_
    return template


def replace_node_name_affinity(affinity: dict[str, Any] | None, node_name: str) -> dict[str, Any]:
    """upstream's ReplaceDaemonSetPodNodeNameNodeAffinity.

    The required node selector becomes a single ``matchFields metadata.name In [node]`` term (the
    controller already checked the template's own terms against this node); preferred terms and
    pod (anti-)affinity are kept.
    """
    pin = {"nodeSelectorTerms": [{"matchFields": [
        {"key": OBJECT_NAME_FIELD, "operator": "In", "values": [node_name]}]}]}
    affinity = dict(affinity or {})
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = pin
    else:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {**required, **pin}
    affinity["nodeAffinity"] = node_affinity
    return affinity


def new_daemon_pod(template: dict[str, Any], ds: dict[str, Any], node_name: str) -> Pod:
    """The pod to create for ``node_name`` (controller.GetPodFromTemplate plus the node pin)."""
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {
        "generateName": f"{ds['metadata']['name']}-",
        "namespace": ds["metadata"].get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_ref({**ds, "kind": ds.get("kind", "DaemonSet")})],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    spec = _json_copy(template.get("spec") or {})
    spec["affinity"] = replace_node_name_affinity(spec.get("affinity"), node_name)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# -- reading pods back -----------------------------------------------------------------------------

def target_node_name(pod: Pod) -> str | None:
    """util.GetTargetNodeName: nodeName once bound, else the node pinned by matchFields."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == OBJECT_NAME_FIELD and req.get("operator") == "In":
                values = req.get("values") or []
                return values[0] if len(values) == 1 else None
    return None


def _ready_condition(pod: Pod) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return None


def is_pod_ready(pod: Pod) -> bool:
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return False
    if not min_ready_seconds:
        return True
    since = parse_rfc3339(cond.get("lastTransitionTime"))
    return since is not None and since.timestamp() + min_ready_seconds < now


def seconds_until_available(pod: Pod, min_ready_seconds: int, now: float) -> float | None:
    """For a ready but not yet available pod, how long until it counts as available."""
    cond = _ready_condition(pod)
    if not min_ready_seconds or cond is None or cond.get("status") != "True":
        return None
    since = parse_rfc3339(cond.get("lastTransitionTime"))
    if since is None:
        return None
    return max(since.timestamp() + min_ready_seconds - now, 0.0)


def is_terminal(pod: Pod) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def is_deleting(pod: Pod) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_name(pod: Pod) -> str:
    return pod["metadata"]["name"]


def oldest_first_key(pod: Pod) -> tuple[int, float, str]:
    """podByCreationTimestampAndPhase: bound pods first, then oldest, then by name."""
    meta = pod.get("metadata") or {}
    created = parse_rfc3339(meta.get("creationTimestamp"))
    bound = 0 if (pod.get("spec") or {}).get("nodeName") else 1
    return bound, created.timestamp() if created else 0.0, meta.get("name") or ""


def is_pod_updated(pod: Pod, hash_: str, generation: int | None) -> bool:
    """util.IsPodUpdated: the pod carries the current hash or the current template generation."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    generation_matches = generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == str(generation)
    hash_matches = bool(hash_) and labels.get(CONTROLLER_REVISION_HASH_LABEL) == hash_
    return hash_matches or generation_matches
