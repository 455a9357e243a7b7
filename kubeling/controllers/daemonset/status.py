"""DaemonSet status as upstream computes it (``updateDaemonSetStatus``), as a pure function (and
``RunningCounts``, the same counts kept up to date node by node between syncs).

Counts run over the nodes that exist: on a node where the pod should run, the oldest daemon pod
decides ready / available / updated; a pod on a node where none should run is misscheduled.
``kubectl get ds`` and ``kubectl rollout status`` read exactly these fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubeling.controllers.daemonset.placement import Placements, verdict
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


NodeCounts = tuple[int, int, int, int, int, int]  # desired, current, misscheduled, ready, updated, available
_NOTHING: NodeCounts = (0, 0, 0, 0, 0, 0)


def node_counts(should_run: bool, pods: list[Pod] | None, *, hash_: str, generation: int | None, min_ready: int,
                now: float) -> NodeCounts:
    """One node's share of the counts."""
    if not should_run:
        return (0, 0, 1, 0, 0, 0) if pods else _NOTHING
    if not pods:
        return (1, 0, 0, 0, 0, 0)
    pod = pods[0] if len(pods) == 1 else min(pods, key=oldest_first_key)
    ready = is_pod_ready(pod)
    available = ready and (not min_ready or is_pod_available(pod, min_ready, now))
    return (1, 1, 0, int(ready), int(is_pod_updated(pod, hash_, generation)), int(available))


def _as_status(totals: list[int] | tuple[int, ...]) -> dict[str, int]:
    desired, current, misscheduled, ready, updated, available = totals
    return {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired, "numberReady": ready, "updatedNumberScheduled": updated,
            "numberAvailable": available, "numberUnavailable": desired - available}


def compute_counts(ds: dict[str, Any], nodes: Iterable[dict[str, Any]], by_node: dict[str, list[Pod]], *,
                   hash_: str, now: float, placements: Placements | None = None) -> dict[str, int]:
    generation = template_generation(ds)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    totals = [0] * 6
    for node in nodes:
        share = node_counts(verdict(node, ds, placements)[0], by_node.get(node["metadata"]["name"]),
                            hash_=hash_, generation=generation, min_ready=min_ready, now=now)
        if share is not _NOTHING:
            for i, v in enumerate(share):
                totals[i] += v
    return _as_status(totals)


class RunningCounts:
    """compute_counts kept between syncs: only the nodes whose pods changed are counted again.

    Valid while the revision, the placement answers (the very same mapping) and the pods-by-node
    mapping stay the same; anything else, or minReadySeconds (availability then depends on the
    clock), counts every node again.
    """

    def __init__(self) -> None:
        self._basis: tuple[Any, ...] | None = None
        self._placements: Placements | None = None
        self._by_node: dict[str, list[Pod]] | None = None
        self._shares: dict[str, NodeCounts] = {}
        self._totals = [0] * 6

    def counts(self, ds: dict[str, Any], nodes: Iterable[dict[str, Any]], by_node: dict[str, list[Pod]],
               changed: set[str] | None, *, hash_: str, now: float, placements: Placements) -> dict[str, int]:
        """``changed``: nodes whose pods changed since the last call (None: unknown)."""
        generation = template_generation(ds)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        basis = (hash_, generation)
        if (changed is None or min_ready or basis != self._basis or placements is not self._placements
                or by_node is not self._by_node):
            self._shares = {}
            self._totals = [0] * 6
            self._basis, self._placements, self._by_node = basis, placements, by_node
            for node in nodes:
                name = node["metadata"]["name"]
                self._count(name, verdict(node, ds, placements)[0], by_node.get(name), hash_, generation,
                            min_ready, now)
        else:
            for name in changed:
                placement = placements.get(name)  # None: not a node (any more); its pods count nowhere
                self._count(name, placement is not None and placement[0], by_node.get(name) if placement else None,
                            hash_, generation, min_ready, now)
        if min_ready:
            self._basis = None  # never reused: see the class docstring
        return _as_status(self._totals)

    def _count(self, name: str, should_run: bool, pods: list[Pod] | None, hash_: str, generation: int | None,
               min_ready: int, now: float) -> None:
        share = node_counts(should_run, pods, hash_=hash_, generation=generation, min_ready=min_ready, now=now)
        before = self._shares.pop(name, _NOTHING)
        if share is not _NOTHING:
            self._shares[name] = share
        if share != before:
            for i in range(6):
                self._totals[i] += share[i] - before[i]


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
