"""DaemonSet status as upstream computes it (``updateDaemonSetStatus``), as a pure function.

Counts run over the nodes that exist: on a node where the pod should run, the oldest daemon pod
decides ready / available / updated; a pod on a node where none should run is misscheduled.
``kubectl get ds`` and ``kubectl rollout status`` read exactly these fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubeling.controllers.daemonset.placement import node_should_run_daemon_pod
from kubeling.controllers.daemonset.pods import (
    Pod,
    is_pod_available,
    is_pod_ready,
    is_pod_updated,
    oldest_first_key,
    template_generation,
)

COUNT_FIELDS = ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady",
                "updatedNumberScheduled", "numberAvailable", "numberUnavailable")


def compute_counts(ds: dict[str, Any], nodes: Iterable[dict[str, Any]], by_node: dict[str, list[Pod]], *,
                   hash_: str, now: float) -> dict[str, int]:
    desired = current = misscheduled = ready = updated = available = 0
    generation = template_generation(ds)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    for node in nodes:
        should_run, _ = node_should_run_daemon_pod(node, ds)
        pods = by_node.get(node["metadata"]["name"]) or []
        if not should_run:
            misscheduled += bool(pods)
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        pod = pods[0] if len(pods) == 1 else min(pods, key=oldest_first_key)
        if is_pod_ready(pod):
            ready += 1
            available += is_pod_available(pod, min_ready, now)
        updated += is_pod_updated(pod, hash_, generation)
    return {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired, "numberReady": ready, "updatedNumberScheduled": updated,
            "numberAvailable": available, "numberUnavailable": desired - available}


def next_status(ds: dict[str, Any], counts: dict[str, int], *, observe_generation: bool) -> dict[str, Any] | None:
    """The status to write, or None when nothing changed (storeDaemonSetStatus)."""
    status = dict(ds.get("status") or {})
    generation = (ds.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or 0
    unchanged = all((status.get(f) or 0) == counts[f] for f in COUNT_FIELDS)
    if unchanged and observed >= generation:
        return None
    if observe_generation:
        status["observedGeneration"] = generation
    status.update(counts)
    return None if status == (ds.get("status") or {}) else status
