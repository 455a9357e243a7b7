"""Pod garbage collection, as upstream's pkg/controller/podgc.

Every pass (20 s):
- Terminated pods (Succeeded/Failed) above the threshold (upstream's
  --terminated-pod-gc-threshold, 12500; ``KUBELING_TERMINATED_POD_GC_THRESHOLD``) are deleted,
  evicted ones first, then oldest first.
- Orphaned pods: a pod bound to a node that no longer exists is marked Failed with the
  DisruptionTarget condition "DeletionByPodGC" and force-deleted, once the node has been gone
  for the quarantine time (40 s), so a node re-registering keeps its pods.
- Unscheduled terminating pods (deleted before they were bound) are force-deleted at once.
Terminating pods on an unreachable node are left to the node lifecycle (no out-of-service taint here).
Tests shorten the period and quarantine with ``KUBELING_POD_GC_PERIOD`` / ``KUBELING_POD_GC_QUARANTINE``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from kubeling.api.timeutil import now_rfc3339
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_not_found

log = logging.getLogger(__name__)
Obj = dict[str, Any]

GC_CHECK_PERIOD = 20.0  # upstream's gcCheckPeriod
QUARANTINE_TIME = 40.0  # upstream's quarantineTime
TERMINATED_POD_GC_THRESHOLD = 12500  # upstream's --terminated-pod-gc-threshold default
THRESHOLD_ENV = "KUBELING_TERMINATED_POD_GC_THRESHOLD"
# test knobs, read at start as KUBELING_NODE_MONITOR_GRACE_PERIOD is: seconds
PERIOD_ENV = "KUBELING_POD_GC_PERIOD"
QUARANTINE_ENV = "KUBELING_POD_GC_QUARANTINE"


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(float(os.environ.get(name, default)), 0.1)
    except ValueError:
        return default


def default_threshold() -> int:
    try:
        return int(os.environ.get(THRESHOLD_ENV, TERMINATED_POD_GC_THRESHOLD))
    except ValueError:
        return TERMINATED_POD_GC_THRESHOLD


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _evicted(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Failed" and st.get("reason") == "Evicted"


def terminated_to_delete(pods: list[Obj], threshold: int) -> list[Obj]:
    """The terminated pods over ``threshold``: evicted first, then by creation time (upstream's order)."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    excess = len(terminated) - threshold
    if excess <= 0:
        return []
    terminated.sort(key=lambda p: (not _evicted(p), p["metadata"].get("creationTimestamp") or "",
                                   p["metadata"].get("namespace") or "", p["metadata"]["name"]))
    return terminated[:excess]


class PodGCController:
    def __init__(self, client: Client, factory: InformerFactory, *, period: float | None = None,
                 quarantine: float | None = None, threshold: int | None = None) -> None:
        self.client = client
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.period = _env_seconds(PERIOD_ENV, GC_CHECK_PERIOD) if period is None else period
        self.quarantine = _env_seconds(QUARANTINE_ENV, QUARANTINE_TIME) if quarantine is None else quarantine
        self.threshold = default_threshold() if threshold is None else threshold
        self._missing_since: dict[str, float] = {}

    async def run(self) -> None:
        await self.pods.wait_synced()
        await self.nodes.wait_synced()
        while True:
            try:
                await self.gc()
            except Exception:  # noqa: BLE001 - the next pass retries; level-triggered
                log.exception("pod gc pass failed")
            await asyncio.sleep(self.period)

    async def gc(self) -> None:
        pods = self.pods.list()
        for pod in terminated_to_delete(pods, self.threshold):
            await self._force_delete(pod, None)
        await self.gc_orphaned(pods)
        for pod in pods:
            if not (pod.get("spec") or {}).get("nodeName") and pod["metadata"].get("deletionTimestamp"):
                await self._force_delete(pod, None)

    async def gc_orphaned(self, pods: list[Obj]) -> None:
        now = time.monotonic()
        missing: dict[str, list[Obj]] = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and self.nodes.get(node) is None:
                missing.setdefault(node, []).append(pod)
        for node in list(self._missing_since):
            if node not in missing:
                del self._missing_since[node]
        for node, orphans in missing.items():
            first = self._missing_since.setdefault(node, now)
            if now - first < self.quarantine:
                continue
            # confirm with a live read: the informer may lag behind a node that just registered
            try:
                await self.client.get("nodes", node)
                continue
            except ApiError as exc:
                if not is_not_found(exc):
                    raise
            for pod in orphans:
                await self._force_delete(pod, "PodGC: node no longer exists")

    async def _force_delete(self, pod: Obj, condition_message: str | None) -> None:
        meta = pod["metadata"]
        if condition_message:
            status: dict[str, Any] = {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                "message": condition_message, "lastTransitionTime": now_rfc3339()}]}
            if not is_terminated(pod):
                status["phase"] = "Failed"
            try:
                await self.client.patch("pods", meta["name"], {"status": status}, namespace=meta["namespace"],
                                        subresource="status", patch_type="strategic")
            except ApiError as exc:
                if is_not_found(exc):
                    return
        log.info("PodGC is force deleting Pod: %s/%s", meta["namespace"], meta["name"])
        try:
            await self.client.delete("pods", meta["name"], namespace=meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
        except ApiError as exc:
            if not is_not_found(exc) and exc.code != 409:
                raise
