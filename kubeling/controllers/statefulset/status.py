"""StatefulSet status, counted exactly as upstream so ``kubectl rollout status sts/x`` prints its lines.

``replicas`` counts created pods (phase set), ``readyReplicas`` running and Ready ones,
``availableReplicas`` those Ready for minReadySeconds, ``currentReplicas``/``updatedReplicas``
created, non-terminating pods labelled with the current/update revision. A finished rolling
update (all replicas updated and ready) makes the update revision current. Fields Go omits when
zero (``omitempty``) are left out, so ``-o jsonpath`` shows what it shows upstream.
"""

from __future__ import annotations

from typing import Any

from kubeling.controllers.statefulset.plan import (
    is_created,
    is_running_and_available,
    is_running_and_ready,
    is_terminating,
    pod_revision,
    replicas_of,
    update_strategy,
)

Obj = dict[str, Any]

_COUNTS = ("replicas", "readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas")
_OMIT_EMPTY = ("readyReplicas", "currentReplicas", "updatedReplicas", "currentRevision", "updateRevision",
               "observedGeneration")


def count_pods(pods: list[Obj], *, min_ready: int, current_rev: str, update_rev: str, now: float) -> dict[str, int]:
    """computeReplicaStatus over every pod with a valid ordinal (placeholders are not created)."""
    counts = dict.fromkeys(_COUNTS, 0)
    for pod in pods:
        created = is_created(pod)
        if created:
            counts["replicas"] += 1
        if is_running_and_ready(pod):
            counts["readyReplicas"] += 1
            if is_running_and_available(pod, min_ready, now):
                counts["availableReplicas"] += 1
        if created and not is_terminating(pod):
            rev = pod_revision(pod)
            if rev == current_rev:
                counts["currentReplicas"] += 1
            if rev == update_rev:
                counts["updatedReplicas"] += 1
    return counts


def new_status(sts: Obj, counts: dict[str, int], *, current_rev: str, update_rev: str,
               collision_count: int) -> Obj:
    """The status one sync computes, with completeRollingUpdate applied."""
    status: Obj = {"observedGeneration": sts["metadata"].get("generation") or 0, **counts,
                   "currentRevision": current_rev, "updateRevision": update_rev,
                   "collisionCount": collision_count}
    complete_rolling_update(sts, status)
    conditions = (sts.get("status") or {}).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status


def complete_rolling_update(sts: Obj, status: Obj) -> None:
    n = replicas_of(sts)
    if (update_strategy(sts).get("type", "RollingUpdate") == "RollingUpdate"
            and status["updatedReplicas"] == n and status["readyReplicas"] == n and status["replicas"] == n):
        status["currentReplicas"] = status["updatedReplicas"]
        status["currentRevision"] = status["updateRevision"]


def inconsistent(sts: Obj, status: Obj) -> bool:
    """inconsistentStatus: whether the computed status differs from the stored one."""
    old = sts.get("status") or {}
    if status.get("observedGeneration", 0) > (old.get("observedGeneration") or 0):
        return True
    for key in (*_COUNTS, "currentRevision", "updateRevision"):
        if (status.get(key) or 0) != (old.get(key) or 0):
            return True
    return (status.get("collisionCount") or 0) != (old.get("collisionCount") or 0)


def to_wire(status: Obj) -> Obj:
    """Drop the fields Go's encoder omits when zero."""
    return {k: v for k, v in status.items() if not (k in _OMIT_EMPTY and not v)}
