"""The StatefulSet controller's decisions, as pure functions of the set, its pods and revisions.

Upstream's ``updateStatefulSet`` interleaves decisions with API writes; here one sync's decisions
are computed up front as :class:`Plan` phases (living replicas, claim fixes for condemned pods,
condemned pods, rolling update) that the controller executes in order, stopping at the first
error. In ``OrderedReady`` (monotonic) mode a phase ends at the first pod that blocks progress,
and later phases are not planned at all; in ``Parallel`` mode everything is planned at once.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from kubeling.api.timeutil import parse_rfc3339
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL, controller_ref

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
RETAIN = "Retain"
DELETE = "Delete"

_ORDINAL_RE = re.compile(r"^(.*)-([0-9]+)$")


# -- identity --------------------------------------------------------------------------------------

def parent_and_ordinal(name: str) -> tuple[str, int]:
    """``web-3`` -> ("web", 3); names without an ordinal -> ("", -1)."""
    m = _ORDINAL_RE.match(name or "")
    if not m:
        return "", -1
    ordinal = int(m.group(2))
    if ordinal > 2**31 - 1:
        return m.group(1), -1
    return m.group(1), ordinal


def ordinal_of(pod: Obj) -> int:
    return parent_and_ordinal(pod["metadata"].get("name", ""))[1]


def is_member_of(sts: Obj, pod: Obj) -> bool:
    return parent_and_ordinal(pod["metadata"].get("name", ""))[0] == sts["metadata"]["name"]


def spec(sts: Obj) -> Obj:
    return sts.get("spec") or {}


def replicas_of(sts: Obj) -> int:
    r = spec(sts).get("replicas")
    return 1 if r is None else int(r)


def start_ordinal(sts: Obj) -> int:
    return int((spec(sts).get("ordinals") or {}).get("start") or 0)


def end_ordinal(sts: Obj) -> int:
    return start_ordinal(sts) + replicas_of(sts) - 1


def in_ordinal_range(pod: Obj, sts: Obj) -> bool:
    return start_ordinal(sts) <= ordinal_of(pod) <= end_ordinal(sts)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template_name: str, sts: Obj, ordinal: int) -> str:
    return f"{template_name}-{sts['metadata']['name']}-{ordinal}"


def pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL, "")


def min_ready_seconds(sts: Obj) -> int:
    return int(spec(sts).get("minReadySeconds") or 0)


def allows_burst(sts: Obj) -> bool:
    return spec(sts).get("podManagementPolicy") == "Parallel"


def update_strategy(sts: Obj) -> Obj:
    return spec(sts).get("updateStrategy") or {"type": "RollingUpdate"}


def partition_of(sts: Obj) -> int | None:
    ru = update_strategy(sts).get("rollingUpdate")
    if ru is None:
        return None
    return int(ru.get("partition") or 0)


def retention_policy(sts: Obj) -> tuple[str, str]:
    """(whenDeleted, whenScaled), Retain when unset."""
    p = spec(sts).get("persistentVolumeClaimRetentionPolicy") or {}
    return p.get("whenDeleted") or RETAIN, p.get("whenScaled") or RETAIN


# -- pod state -------------------------------------------------------------------------------------

def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_created(pod: Obj) -> bool:
    return phase(pod) != ""


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _ready_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return None


def is_running_and_ready(pod: Obj) -> bool:
    cond = _ready_condition(pod)
    return phase(pod) == "Running" and cond is not None and cond.get("status") == "True"


def is_running_and_available(pod: Obj, min_ready: int, now: float) -> bool:
    """podutil.IsPodAvailable: Ready for at least minReadySeconds (phase is not checked)."""
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return False
    if not min_ready:
        return True
    since = parse_rfc3339(cond.get("lastTransitionTime"))
    return since is not None and since.timestamp() + min_ready <= now


def seconds_until_available(pod: Obj, min_ready: int, now: float) -> float | None:
    cond = _ready_condition(pod)
    if not min_ready or cond is None or cond.get("status") != "True":
        return None
    since = parse_rfc3339(cond.get("lastTransitionTime"))
    if since is None:
        return None
    return max(since.timestamp() + min_ready - now, 0.0)


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def is_unavailable(pod: Obj, min_ready: int, now: float) -> bool:
    return not is_healthy(pod) or not is_running_and_available(pod, min_ready, now)


# -- building pods and claims ----------------------------------------------------------------------

def apply_revision(sts: Obj, revision: Obj) -> Obj:
    """ApplyRevision: the set with its pod template replaced by the revision's (``$patch: replace``)."""
    clone = copy.deepcopy(sts)
    data = revision.get("data") or {}
    template = copy.deepcopy(((data.get("spec") or {}).get("template")) or {})
    template.pop("$patch", None)
    meta = template.get("metadata")
    if isinstance(meta, dict) and meta.get("creationTimestamp") is None:
        meta.pop("creationTimestamp", None)
    clone.setdefault("spec", {})["template"] = template
    return clone


def claims_for(sts: Obj, ordinal: int) -> dict[str, Obj]:
    """getPersistentVolumeClaims: template name -> the claim that ordinal's pod uses."""
    match_labels = (spec(sts).get("selector") or {}).get("matchLabels") or {}
    claims: dict[str, Obj] = {}
    for tmpl in spec(sts).get("volumeClaimTemplates") or []:
        tmeta = tmpl.get("metadata") or {}
        name = tmeta.get("name", "")
        meta: Obj = {k: copy.deepcopy(v) for k, v in tmeta.items()
                     if k in ("labels", "annotations", "finalizers")}
        meta["name"] = claim_name(name, sts, ordinal)
        meta["namespace"] = sts["metadata"].get("namespace")
        meta["labels"] = {**(meta.get("labels") or {}), **match_labels}
        claims[name] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                        "spec": copy.deepcopy(tmpl.get("spec") or {})}
    return claims


def new_pod(sts: Obj, ordinal: int, revision_name: str) -> Obj:
    """newStatefulSetPod + setPodRevision: a pod from ``sts``'s template with its stable identity."""
    template = spec(sts).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = pod_name(sts, ordinal)
    labels = dict(tmeta.get("labels") or {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[CONTROLLER_REVISION_HASH_LABEL] = revision_name
    meta: Obj = {"name": name, "generateName": f"{sts['metadata']['name']}-",
                 "namespace": sts["metadata"].get("namespace"), "labels": labels,
                 "ownerReferences": [controller_ref({**sts, "kind": "StatefulSet",
                                                     "apiVersion": "apps/v1"})]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    pod_spec = copy.deepcopy(template.get("spec") or {})
    pod_spec["hostname"] = name
    if spec(sts).get("serviceName"):
        pod_spec["subdomain"] = spec(sts)["serviceName"]
    claims = claims_for(sts, ordinal)
    volumes = [{"name": tname, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}}
               for tname, c in claims.items()]
    volumes += [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
    if volumes:
        pod_spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}


def new_versioned_pod(current_set: Obj, update_set: Obj, current_rev: str, update_rev: str, ordinal: int) -> Obj:
    """Ordinals below the partition come back at the current revision, the rest at the update one."""
    part = partition_of(current_set)
    if update_strategy(current_set).get("type", "RollingUpdate") == "RollingUpdate" and part is not None \
            and ordinal < start_ordinal(current_set) + part:
        return new_pod(current_set, ordinal, current_rev)
    return new_pod(update_set, ordinal, update_rev)


def identity_matches(sts: Obj, pod: Obj) -> bool:
    parent, ordinal = parent_and_ordinal(pod["metadata"].get("name", ""))
    return (ordinal >= 0 and parent == sts["metadata"]["name"]
            and pod["metadata"].get("namespace") == sts["metadata"].get("namespace")
            and (pod["metadata"].get("labels") or {}).get(POD_NAME_LABEL) == pod["metadata"]["name"])


def storage_matches(sts: Obj, pod: Obj) -> bool:
    ordinal = ordinal_of(pod)
    if ordinal < 0:
        return False
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for tmpl in spec(sts).get("volumeClaimTemplates") or []:
        name = (tmpl.get("metadata") or {}).get("name", "")
        pvc = (volumes.get(name) or {}).get("persistentVolumeClaim")
        if not pvc or pvc.get("claimName") != claim_name(name, sts, ordinal):
            return False
    return True


# -- claim ownership under persistentVolumeClaimRetentionPolicy ------------------------------------

def _matches_ref(ref: Obj, api_version: str, kind: str, name: str) -> bool:
    return ref.get("apiVersion") == api_version and ref.get("kind") == kind and ref.get("name") == name


def _refs(obj: Obj) -> list[Obj]:
    return (obj.get("metadata") or {}).get("ownerReferences") or []


def _uid(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("uid") or ""


def _has_ref(claim: Obj, owner: Obj) -> bool:
    uid = _uid(owner)
    return any(r.get("uid") == uid for r in _refs(claim))


def _stale_ref(claim: Obj, owner: Obj, api_version: str, kind: str) -> bool:
    for r in _refs(claim):
        if _matches_ref(r, api_version, kind, owner["metadata"]["name"]):
            return r.get("uid") != _uid(owner)
    return False


def _unexpected_controller(claim: Obj, sts: Obj, pod: Obj) -> bool:
    if retention_policy(sts) == (RETAIN, RETAIN):
        return False
    for r in _refs(claim):
        if _matches_ref(r, "apps/v1", "StatefulSet", sts["metadata"]["name"]):
            if r.get("uid") != _uid(sts):
                return True
            continue
        if _matches_ref(r, "v1", "Pod", pod["metadata"]["name"]):
            if r.get("uid") != _uid(pod):
                return True
            continue
        if r.get("controller"):
            return True
    return False


def claim_owner_up_to_date(claim: Obj, sts: Obj, pod: Obj) -> bool:
    """isClaimOwnerUpToDate: the claim's refs to set and pod agree with the retention policy."""
    if _stale_ref(claim, sts, "apps/v1", "StatefulSet") or _stale_ref(claim, pod, "v1", "Pod"):
        return True  # left to the garbage collector
    if _unexpected_controller(claim, sts, pod):
        return not (_has_ref(claim, sts) or _has_ref(claim, pod))
    for r in _refs(claim):
        if r.get("uid") in (_uid(sts), _uid(pod)) and not r.get("controller"):
            return False
    when_deleted, when_scaled = retention_policy(sts)
    has_set, has_pod = _has_ref(claim, sts), _has_ref(claim, pod)
    scaled_down = not in_ordinal_range(pod, sts)
    if when_scaled == DELETE and when_deleted == DELETE:
        return scaled_down != has_set and scaled_down == has_pod
    if when_scaled == DELETE:
        return not has_set and scaled_down == has_pod
    if when_deleted == DELETE:
        return has_set and not has_pod
    return not has_set and not has_pod


def claim_owner_refs(claim: Obj, sts: Obj, pod: Obj) -> list[Obj]:
    """updateClaimOwnerRefForSetAndPod: the claim's ownerReferences the retention policy wants."""
    unexpected = _unexpected_controller(claim, sts, pod)
    refs = [r for r in _refs(claim)
            if not (_matches_ref(r, "apps/v1", "StatefulSet", sts["metadata"]["name"])
                    or _matches_ref(r, "v1", "Pod", pod["metadata"]["name"]))]
    if unexpected:
        return refs
    when_deleted, when_scaled = retention_policy(sts)
    scaled_down = not in_ordinal_range(pod, sts)
    set_ref = controller_ref({**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"})
    pod_ref = controller_ref({**pod, "apiVersion": "v1", "kind": "Pod"})
    if when_scaled == DELETE and scaled_down:
        refs.append(pod_ref)
    elif when_deleted == DELETE and (when_scaled == RETAIN or not scaled_down):
        refs.append(set_ref)
    return refs


def claims_needing_fix(sts: Obj, pod: Obj, claims: dict[str, Obj]) -> list[Obj]:
    """Existing claims of ``pod`` (by name) whose ownerReferences must change, already changed."""
    fixed = []
    for c in claims_for(sts, ordinal_of(pod)).values():
        existing = claims.get(c["metadata"]["name"])
        if existing is None or claim_owner_up_to_date(existing, sts, pod):
            continue
        updated = copy.deepcopy(existing)
        updated["metadata"]["ownerReferences"] = claim_owner_refs(existing, sts, pod)
        fixed.append(updated)
    return fixed


def pod_claim_is_stale(sts: Obj, pod: Obj, claims: dict[str, Obj]) -> bool:
    """A claim still owned by an earlier pod of this name: wait for the garbage collector."""
    for c in claims_for(sts, ordinal_of(pod)).values():
        existing = claims.get(c["metadata"]["name"])
        if existing is not None and _stale_ref(existing, pod, "v1", "Pod"):
            return True
    return False


def missing_claims(sts: Obj, pod: Obj, claims: dict[str, Obj]) -> list[Obj]:
    return [c for c in claims_for(sts, ordinal_of(pod)).values() if c["metadata"]["name"] not in claims]


# -- maxUnavailable --------------------------------------------------------------------------------

def max_unavailable(sts: Obj) -> int:
    """getStatefulSetMaxUnavailable: an int or a percentage of replicas rounded down, at least 1."""
    ru = update_strategy(sts).get("rollingUpdate") or {}
    value = ru.get("maxUnavailable")
    if value is None:
        return 1
    if isinstance(value, str) and value.endswith("%"):
        n = math.floor(int(value[:-1]) * replicas_of(sts) / 100)
    else:
        n = int(value)
    return max(n, 1)


# -- the plan --------------------------------------------------------------------------------------

@dataclass
class Action:
    """One write: ``create`` (pod plus the claims it lacks), ``delete`` (pod), ``create_claims``
    (for a Pending pod), ``fix_claims`` (ownerReferences), ``relabel`` (identity labels)."""
    kind: str
    pod: Obj
    claims: list[Obj] = field(default_factory=list)
    reason: str = ""


@dataclass
class Plan:
    phases: list[list[Action]]
    monotonic: bool
    replicas: list[Obj]
    condemned: list[Obj]
    rolling_deleted: int = 0
    requeue_after: float | None = None

    def actions(self) -> list[Action]:
        return [a for p in self.phases for a in p]


def plan(sts: Obj, pods: list[Obj], *, current_rev: Obj, update_rev: Obj, claims: dict[str, Obj],
         now: float) -> Plan:
    """The writes one sync makes for ``sts`` (upstream's updateStatefulSet, minus the writes)."""
    current_set = apply_revision(sts, current_rev)
    update_set = apply_revision(sts, update_rev)
    cur_name = current_rev["metadata"]["name"]
    upd_name = update_rev["metadata"]["name"]
    start, count = start_ordinal(sts), replicas_of(sts)
    min_ready = min_ready_seconds(sts)
    slots: list[Obj | None] = [None] * count
    condemned: list[Obj] = []
    for pod in pods:
        ordinal = ordinal_of(pod)
        if in_ordinal_range(pod, sts):
            slots[ordinal - start] = pod
        elif ordinal >= 0:
            condemned.append(pod)
    replicas: list[Obj] = [p if p is not None else
                           new_versioned_pod(current_set, update_set, cur_name, upd_name, start + i)
                           for i, p in enumerate(slots)]
    condemned.sort(key=ordinal_of, reverse=True)
    first_unavailable = next((p for p in replicas if is_unavailable(p, min_ready, now)), None)
    if first_unavailable is None:
        first_unavailable = next((p for p in reversed(condemned) if is_unavailable(p, min_ready, now)), None)
    monotonic = not allows_burst(sts)
    result = Plan(phases=[], monotonic=monotonic, replicas=replicas, condemned=condemned)
    waits = [w for p in replicas + condemned if (w := seconds_until_available(p, min_ready, now))]
    if waits:
        result.requeue_after = min(waits) + 0.1
    if sts["metadata"].get("deletionTimestamp"):
        return result

    # 1. living replicas: recreate failed pods, create missing ones, enforce identity and claims
    phase1: list[Action] = []
    result.phases.append(phase1)
    for pod in replicas:
        if phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                phase1.append(Action("delete", pod, reason="failed"))
            if monotonic:
                return result
            continue
        if not is_created(pod):
            if pod_claim_is_stale(sts, pod, claims):
                if monotonic:
                    return result
                continue
            phase1.append(Action("create", pod, claims=missing_claims(sts, pod, claims)))
            if monotonic:
                return result
            continue
        if phase(pod) == "Pending":
            missing = missing_claims(sts, pod, claims)
            if missing:
                phase1.append(Action("create_claims", pod, claims=missing))
        if monotonic and (is_terminating(pod) or not is_running_and_ready(pod)
                          or not is_running_and_available(pod, min_ready, now)):
            return result
        fixes = claims_needing_fix(update_set, pod, claims)
        if fixes:
            phase1.append(Action("fix_claims", pod, claims=fixes))
        if not identity_matches(sts, pod):
            phase1.append(Action("relabel", pod))

    # 2. claims of condemned pods get the ownerReferences whenScaled asks for
    phase2 = [Action("fix_claims", pod, claims=fixes) for pod in condemned
              if (fixes := claims_needing_fix(update_set, pod, claims))]
    result.phases.append(phase2)

    # 3. condemned pods go, highest ordinal first, one at a time unless Parallel
    phase3: list[Action] = []
    result.phases.append(phase3)
    for pod in condemned:
        if is_terminating(pod):
            if monotonic:
                return result
            continue
        if monotonic and pod is not first_unavailable and (
                not is_running_and_ready(pod) or not is_running_and_available(pod, min_ready, now)):
            return result
        phase3.append(Action("delete", pod, reason="condemned"))
        if monotonic:
            return result

    if update_strategy(sts).get("type") == "OnDelete":
        return result

    # 4. rolling update: highest ordinal first down to the partition, within maxUnavailable
    phase4: list[Action] = []
    result.phases.append(phase4)
    update_min = partition_of(sts) or 0
    budget = max_unavailable(sts) - sum(1 for p in replicas if is_unavailable(p, min_ready, now))
    for target in range(len(replicas) - 1, update_min - 1, -1):
        if budget <= 0:
            break
        pod = replicas[target]
        if pod_revision(pod) != upd_name and not is_terminating(pod):
            phase4.append(Action("delete", pod, reason="update"))
            result.rolling_deleted += 1
            budget -= 1
    return result
