"""The garbage collector: dependents follow their owners, as upstream's pkg/controller/garbagecollector.

An object whose every owner (by ownerReferences uid) is gone is deleted in the
background. An owner deleted with ``propagationPolicy: Orphan`` carries the
``orphan`` finalizer: its dependents lose the ownerReference, then the finalizer
is removed. One deleted with ``Foreground`` carries ``foregroundDeletion``: its
dependents are deleted first, and the finalizer goes once none remains.

Owners are looked up in shared informers where we have them and with a live GET
otherwise, so a lagging cache never makes the collector delete a live object's
dependents.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubeling.client.controller import run_controller
from kubeling.client.informer import Informer, InformerFactory
from kubeling.client.rest import ApiError, Client, is_not_found
from kubeling.client.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]

OWNER_INDEX = "owner-uid"
# resources whose objects commonly have owners, watched as dependents
DEPENDENT_RESOURCES = [
    "pods", "controllerrevisions.apps", "replicasets.apps", "jobs.batch", "persistentvolumeclaims",
    "leases.coordination.k8s.io", "configmaps", "secrets", "services", "endpointslices.discovery.k8s.io",
    "deployments.apps", "daemonsets.apps", "statefulsets.apps", "cronjobs.batch", "serviceaccounts",
    "poddisruptionbudgets.policy",
]
# kind -> resource for owners we can look up (informer if watched, else live GET)
KIND_RESOURCES = {
    ("apps", "DaemonSet"): "daemonsets.apps", ("apps", "StatefulSet"): "statefulsets.apps",
    ("apps", "ReplicaSet"): "replicasets.apps", ("apps", "Deployment"): "deployments.apps",
    ("apps", "ControllerRevision"): "controllerrevisions.apps",
    ("batch", "Job"): "jobs.batch", ("batch", "CronJob"): "cronjobs.batch",
    ("", "Node"): "nodes", ("", "Pod"): "pods", ("", "Service"): "services", ("", "ConfigMap"): "configmaps",
    ("", "Secret"): "secrets", ("", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("", "ServiceAccount"): "serviceaccounts", ("", "Namespace"): "namespaces",
    ("", "PersistentVolume"): "persistentvolumes",
    ("coordination.k8s.io", "Lease"): "leases.coordination.k8s.io",
    ("rollouts.kubeling.io", "RolloutPlan"): "rolloutplans.rollouts.kubeling.io",
}
CLUSTER_SCOPED_KINDS = {"Node", "Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
                        "StorageClass", "PriorityClass", "CustomResourceDefinition"}


def _owner_uids(obj: Obj) -> list[str]:
    return [r["uid"] for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("uid")]


def _group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


class GarbageCollector:
    def __init__(self, client: Client, factory: InformerFactory, *, workers: int = 2) -> None:
        self.client = client
        self.workers = workers
        self.informers: dict[str, Informer] = {}
        for res in DEPENDENT_RESOURCES + ["nodes"]:
            inf = factory.informer(res, indexers={OWNER_INDEX: _owner_uids})
            self.informers[res] = inf
        # a dependent to check: ("dep", resource, key); an owner being deleted: ("owner", resource, key)
        self.queue = WorkQueue()
        # owner uid -> (resource, key) of objects referencing it, across all informers, kept up to date
        # by the events so an event costs O(its references), not a look into every informer's index.
        # It may hold a stale pair after a relist (a dependent re-checked for nothing), never miss one.
        self._dependents_of: dict[str, set[tuple[str, str]]] = {}
        for res, inf in self.informers.items():
            inf.add_handler(self._handler(res))

    def _handler(self, res: str):  # type: ignore[no-untyped-def]
        def on_event(etype: str, obj: Obj, old: Obj | None) -> None:
            meta = obj.get("metadata", {})
            old_meta = old.get("metadata", {}) if old is not None else None
            refs = meta.get("ownerReferences")
            # Most events are status updates of objects whose owners did not change: like
            # upstream's graph builder, look at a dependent only when its references change (its
            # owners' own events cover the rest), unless an owner is of a kind nobody here watches.
            refs_changed = old_meta is None or etype == "DELETED" or refs != old_meta.get("ownerReferences")
            if not refs_changed and not meta.get("deletionTimestamp") and not self._has_unwatched_owner(refs):
                return
            key = f"{meta.get('namespace')}/{meta['name']}" if meta.get("namespace") else meta["name"]
            if etype != "DELETED" and refs and (refs_changed or self._has_unwatched_owner(refs)):
                self.queue.add(("dep", res, key))
            fins = meta.get("finalizers") or []
            if etype != "DELETED" and meta.get("deletionTimestamp") and (
                    "orphan" in fins or "foregroundDeletion" in fins):
                self.queue.add(("owner", res, key))
            if refs_changed and (refs or (old_meta is not None and old_meta.get("ownerReferences"))):
                self._track_references(res, key, etype, obj, old)  # (no owners before or now: nothing to track)
            uid = meta.get("uid")
            newly_deleting = meta.get("deletionTimestamp") and not (old_meta or {}).get("deletionTimestamp")
            if uid and (etype == "DELETED" or newly_deleting):
                # dependents of an owner that just went away (or is being deleted) need a look
                for dep in list(self._dependents_of.get(uid) or ()):
                    self.queue.add(("dep", *dep))
        return on_event

    def _has_unwatched_owner(self, refs: list[Obj] | None) -> bool:
        """An owner whose deletion no informer here reports (checked on the dependent's events)."""
        for ref in refs or ():
            res = KIND_RESOURCES.get((_group_of(ref.get("apiVersion", "")), ref.get("kind", "")))
            if res is not None and res not in self.informers:
                return True
        return False

    def _track_references(self, res: str, key: str, etype: str, obj: Obj, old: Obj | None) -> None:
        now = set() if etype == "DELETED" else set(_owner_uids(obj))
        before = set(_owner_uids(old)) if old is not None else set()
        if etype == "DELETED":
            before.update(_owner_uids(obj))
        dep = (res, key)
        for uid in before - now:
            deps = self._dependents_of.get(uid)
            if deps is not None:
                deps.discard(dep)
                if not deps:
                    del self._dependents_of[uid]
        for uid in now:
            self._dependents_of.setdefault(uid, set()).add(dep)

    async def run(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self.informers.values()))
        await run_controller("garbagecollector", self.queue, self.sync, workers=self.workers)

    # ---- owner lookups ------------------------------------------------------------------------
    async def _owner_state(self, ref: Obj, namespace: str | None) -> Obj | None:
        """The owner object if it exists with the referenced uid, else None (live check)."""
        group = _group_of(ref.get("apiVersion", ""))
        res = KIND_RESOURCES.get((group, ref.get("kind", "")))
        if res is None:
            return {"metadata": {"uid": ref.get("uid")}}  # unknown kind: never collect on a guess
        ns = None if ref.get("kind") in CLUSTER_SCOPED_KINDS else namespace
        inf = self.informers.get(res)
        if inf is not None:
            cached = inf.get(ref["name"], ns)
            if cached is not None and cached["metadata"].get("uid") == ref.get("uid"):
                return cached
        try:
            live = await self.client.get(res, ref["name"], namespace=ns)
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise
        return live if live["metadata"].get("uid") == ref.get("uid") else None

    # ---- sync ---------------------------------------------------------------------------------
    async def sync(self, item: tuple[str, str, str]) -> None:
        kind, res, key = item
        ns, _, name = key.rpartition("/")
        namespace = ns or None
        inf = self.informers[res]
        obj = inf.get(name, namespace)
        if obj is None:
            return
        if kind == "dep":
            await self._sync_dependent(res, obj)
        else:
            await self._sync_owner(res, obj)

    async def _sync_dependent(self, res: str, obj: Obj) -> None:
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if not refs or meta.get("deletionTimestamp"):
            return
        dangling, waiting_foreground, alive = [], False, False
        for ref in refs:
            owner = await self._owner_state(ref, meta.get("namespace"))
            if owner is None:
                dangling.append(ref)
                continue
            ometa = owner.get("metadata", {})
            if ometa.get("deletionTimestamp") and "foregroundDeletion" in (ometa.get("finalizers") or []):
                waiting_foreground = True
            else:
                alive = True
        if not dangling and not waiting_foreground:
            return
        if alive:
            if dangling:
                # some owners remain: drop only the references to the ones that are gone
                keep = [r for r in refs if r not in dangling]
                await self._patch_refs(res, obj, keep)
            return
        policy = "Foreground" if waiting_foreground else "Background"
        log.info("garbage collecting %s %s/%s (%s)", res, meta.get("namespace"), meta["name"], policy)
        try:
            await self.client.delete(res, meta["name"], namespace=meta.get("namespace"),
                                     propagation_policy=policy,
                                     preconditions={"uid": meta["uid"]})
        except ApiError as exc:
            if not is_not_found(exc) and exc.code != 409:
                raise

    async def _patch_refs(self, res: str, obj: Obj, refs: list[Obj]) -> None:
        meta = obj["metadata"]
        body = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": refs}]
        if not refs:
            body[1] = {"op": "remove", "path": "/metadata/ownerReferences"}
        try:
            await self.client.patch(res, meta["name"], body, namespace=meta.get("namespace"), patch_type="json")
        except ApiError as exc:
            if not is_not_found(exc) and exc.code != 422:
                raise

    def _dependents(self, uid: str) -> list[tuple[str, Obj]]:
        out = []
        for res, inf in self.informers.items():
            for dep in inf.by_index(OWNER_INDEX, uid):
                out.append((res, dep))
        return out

    async def _sync_owner(self, res: str, owner: Obj) -> None:
        meta = owner["metadata"]
        fins = list(meta.get("finalizers") or [])
        uid = meta["uid"]
        deps = self._dependents(uid)
        if "orphan" in fins:
            for dres, dep in deps:
                keep = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                await self._patch_refs(dres, dep, keep)
            await self._remove_finalizer(res, owner, "orphan")
            return
        if "foregroundDeletion" in fins:
            blocking = []
            for dres, dep in deps:
                dmeta = dep["metadata"]
                ref = next((r for r in dmeta.get("ownerReferences") or [] if r.get("uid") == uid), {})
                if not dmeta.get("deletionTimestamp"):
                    try:
                        await self.client.delete(dres, dmeta["name"], namespace=dmeta.get("namespace"),
                                                 propagation_policy="Foreground")
                    except ApiError as exc:
                        if not is_not_found(exc):
                            raise
                if ref.get("blockOwnerDeletion"):
                    blocking.append(dep)
            if blocking:
                # re-check when the dependents are gone: their DELETED events requeue us too
                self.queue.add_after(("owner", res, _key(meta)), 1.0)
                return
            await self._remove_finalizer(res, owner, "foregroundDeletion")

    async def _remove_finalizer(self, res: str, obj: Obj, finalizer: str) -> None:
        meta = obj["metadata"]
        fins = [f for f in meta.get("finalizers") or [] if f != finalizer]
        body = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                {"op": "replace", "path": "/metadata/finalizers", "value": fins}]
        try:
            await self.client.patch(res, meta["name"], body, namespace=meta.get("namespace"), patch_type="json")
        except ApiError as exc:
            if not is_not_found(exc):
                raise


def _key(meta: Obj) -> str:
    return f"{meta.get('namespace')}/{meta['name']}" if meta.get("namespace") else meta["name"]
