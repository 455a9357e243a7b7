"""Pod garbage collection, as upstream's pkg/controller/podgc.

- Orphaned pods: a pod bound to a node that no longer exists is force-deleted
  (after the node has been gone for the quarantine time, so a node re-registering
  keeps its pods), with the DisruptionTarget condition "DeletionByPodGC".
- Terminating pods on an unreachable node (NotReady, out-of-service) are left to the
  node lifecycle; unscheduled terminating pods are force-deleted at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubeling.api.timeutil import now_rfc3339
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_not_found

log = logging.getLogger(__name__)
Obj = dict[str, Any]

GC_CHECK_PERIOD = 20.0  # upstream's gcCheckPeriod
QUARANTINE_TIME = 40.0  # upstream's quarantineTime


class PodGCController:
    def __init__(self, client: Client, factory: InformerFactory, *, period: float = GC_CHECK_PERIOD,
                 quarantine: float = QUARANTINE_TIME) -> None:
        self.client = client
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.period = period
        self.quarantine = quarantine
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
        now = time.monotonic()
        missing: dict[str, list[Obj]] = {}
        for pod in self.pods.list():
            spec = pod.get("spec") or {}
            node = spec.get("nodeName")
            if not node:
                if pod["metadata"].get("deletionTimestamp"):
                    await self._force_delete(pod, None)
                continue
            if self.nodes.get(node) is None:
                missing.setdefault(node, []).append(pod)
        for node in list(self._missing_since):
            if node not in missing:
                del self._missing_since[node]
        for node, pods in missing.items():
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
            for pod in pods:
                await self._force_delete(pod, "PodGC")

    async def _force_delete(self, pod: Obj, reason: str | None) -> None:
        meta = pod["metadata"]
        if reason:
            patch = {"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists", "lastTransitionTime": now_rfc3339()}]}}
            try:
                await self.client.patch("pods", meta["name"], patch, namespace=meta["namespace"],
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
