"""The namespace controller: empties a terminating namespace, then finalizes it.

As upstream's pkg/controller/namespace: when a namespace has a deletionTimestamp
it deletes every namespaced object in it (found through discovery, so every
served kind counts), and once nothing is left it removes the ``kubernetes``
finalizer through the ``finalize`` subresource, which lets the API server drop
the namespace.
"""

from __future__ import annotations

import logging
from typing import Any

from kubeling.client.controller import run_controller
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_not_found
from kubeling.client.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class NamespaceController:
    def __init__(self, client: Client, factory: InformerFactory, *, workers: int = 1) -> None:
        self.client = client
        self.workers = workers
        self.namespaces = factory.informer("namespaces")
        self.queue = WorkQueue()
        self.namespaces.add_handler(self._on_event)
        self._resources: list[str] | None = None

    def _on_event(self, etype: str, obj: Obj, old: Obj | None) -> None:
        if etype != "DELETED" and obj["metadata"].get("deletionTimestamp"):
            self.queue.add(obj["metadata"]["name"])

    async def run(self) -> None:
        await self.namespaces.wait_synced()
        await run_controller("namespace", self.queue, self.sync, workers=self.workers)

    async def _namespaced_resources(self) -> list[str]:
        """Every namespaced resource that supports list and delete, from discovery."""
        out: list[str] = []
        core = await self.client.request("GET", "/api/v1")
        groups = await self.client.request("GET", "/apis")
        lists = [("", "v1", core)]
        for g in groups.get("groups", []):
            pv = g.get("preferredVersion", {}).get("version")
            if pv:
                lists.append((g["name"], pv, await self.client.request("GET", f"/apis/{g['name']}/{pv}")))
        for group, version, body in lists:
            for r in body.get("resources", []):
                if "/" in r["name"] or not r.get("namespaced"):
                    continue
                verbs = set(r.get("verbs") or [])
                if {"list", "delete"} <= verbs:
                    out.append(r["name"] if not group else f"{r['name']}.{version}.{group}")
        return out

    async def sync(self, name: str) -> None:
        ns = self.namespaces.get(name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if "kubernetes" not in (ns.get("spec") or {}).get("finalizers") or []:
            return
        if self._resources is None:
            self._resources = await self._namespaced_resources()
        remaining = 0
        for res in self._resources:
            try:
                items = (await self.client.list(res, namespace=name)).get("items", [])
            except ApiError as exc:
                if exc.code in (404, 405):
                    continue
                raise
            for item in items:
                remaining += 1
                if item["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(res, item["metadata"]["name"], namespace=name,
                                             propagation_policy="Background")
                except ApiError as exc:
                    if not is_not_found(exc):
                        raise
        if remaining:
            # objects with grace periods or finalizers take a moment; look again soon
            self.queue.add_after(name, 1.0)
            return
        spec = dict(ns.get("spec") or {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": ns["metadata"], "spec": spec}
        try:
            await self.client.update("namespaces", body, subresource="finalize")
        except ApiError as exc:
            if not is_not_found(exc):
                raise
