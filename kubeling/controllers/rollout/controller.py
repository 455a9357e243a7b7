"""The RolloutPlan controller: moves each plan's rollout from step to step, and rolls back.

It only reads (plans, DaemonSets, their ControllerRevisions and pods, nodes, all through shared
informers) and writes the plan's status, events, and, on failure or abort, the DaemonSet's
template (back to the stable revision, as ``kubectl rollout undo`` does). The DaemonSet controller
reads the plan's status to know which nodes it may update (see ``daemonset/holdback.py``); the two
never call each other. Each sync is one :func:`reconcile.decide` over fresh lister contents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubeling.client import ownership
from kubeling.client.events import EventRecorder
from kubeling.client.informer import copy as deep_copy
from kubeling.client.informer import object_key, split_key
from kubeling.client.ownership import CONTROLLER_UID_INDEX
from kubeling.client.rest import ApiError, Client
from kubeling.client.workqueue import WorkQueue
from kubeling.controllers import history
from kubeling.controllers.rollout.observe import observe
from kubeling.controllers.rollout.podview import PodView
from kubeling.controllers.rollout.reconcile import WHY_LIMIT, decide

log = logging.getLogger(__name__)

COMPONENT = "rolloutplan-controller"
PLAN_RESOURCE = "rolloutplans.v1alpha1.rollouts.kubeling.io"
DS_RESOURCE = "daemonsets.apps"
CHANGE_CAUSE = "kubernetes.io/change-cause"
SYNC_PACE_MIN = 0.002   # syncs quicker than this are not paced (small clusters)
SYNC_PACE_FACTOR = 3.0  # a plan waits this many times its last sync's work before the next one
SYNC_PACE_MAX = 0.5     # the longest a plan is held back after a sync
POD_VIEWS = 64         # DaemonSets whose pods are followed between syncs
MAX_DIRTY = 50_000     # changed pods noted for one view before it is given up (built again)
SYNC_PACE_WRITTEN = 0.1  # the least a plan is held back after a sync that wrote its status


def _owner_uid(obj: dict[str, Any]) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if r.get("controller") and r.get("kind") == "DaemonSet" and r.get("uid")]


def current_revision(ds: dict[str, Any], revisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The DaemonSet's ControllerRevision holding its current template (newest if several)."""
    matching = [r for r in revisions if history.matches_template(ds, r)]
    return history.sort_by_revision(matching)[-1] if matching else None


class _TrackedPods:
    """A DaemonSet's :class:`PodView` and the keys of its pods that changed since it was last read."""

    def __init__(self, view: PodView) -> None:
        self.view = view
        self.dirty: set[str] = set()
        self.overflowed = False

    def mark(self, key: str) -> None:
        if self.overflowed:
            return
        self.dirty.add(key)
        if len(self.dirty) > MAX_DIRTY:  # its plan is not syncing: build afresh when it does
            self.overflowed = True
            self.dirty.clear()


class RolloutPlanController:
    """Drives RolloutPlans; see the module docstring."""

    def __init__(self, client: Client, factory: Any, *, workers: int = 2) -> None:
        self.client = client
        self.factory = factory
        self.workers = workers
        self.plans = factory.informer(PLAN_RESOURCE)
        self.daemonsets = factory.informer(DS_RESOURCE)
        self.pods = factory.informer("pods", indexers=ownership.INDEXERS)
        self.nodes = factory.informer("nodes")
        self.revisions = factory.informer(history.RESOURCE, indexers=ownership.INDEXERS)
        self.queue = WorkQueue("rolloutplan")
        self.recorder = EventRecorder(client, COMPONENT)
        self._not_before: dict[str, float] = {}  # plan key -> loop time of its next sync (pacing)
        self._computed: dict[str, float] = {}  # plan key -> CPU seconds its sync spent in observe, decide
        self._wrote: set[str] = set()  # plan keys whose sync (under way) wrote the plan's status
        self._pod_views: dict[str, _TrackedPods] = {}  # DaemonSet uid -> its pods, as of its plan's last sync
        self._following_pods = False  # whether _on_pod hears of every pod change (views may be kept)

    async def run(self) -> None:
        from kubeling.client.controller import run_controller

        self.plans.add_handler(lambda _t, obj, _o: self.queue.add(object_key(obj)))
        self.daemonsets.add_handler(lambda _t, obj, _o: self._enqueue_for_ds(obj))
        self.revisions.add_handler(lambda _t, obj, _o: self._enqueue_for_owner(obj))
        self.pods.add_handler(self._on_pod)
        self._following_pods = True
        self.nodes.add_handler(self._on_node)
        self.factory.start()
        await asyncio.gather(*(i.wait_synced() for i in (self.plans, self.daemonsets, self.pods, self.nodes,
                                                          self.revisions)))
        await run_controller("rolloutplan", self.queue, self.sync, self.workers)

    # -- event handlers: everything becomes plan keys ----------------------------------------------

    def _enqueue_for_ds(self, ds: dict[str, Any]) -> None:
        ns, name = ds["metadata"].get("namespace"), ds["metadata"]["name"]
        for plan in self.plans.list(ns):
            if ((plan.get("spec") or {}).get("targetRef") or {}).get("name") == name:
                self.queue.add(object_key(plan))

    def _enqueue_for_owner(self, obj: dict[str, Any]) -> None:
        ns = obj["metadata"].get("namespace")
        for ref in (obj["metadata"].get("ownerReferences") or []):
            if ref.get("controller") and ref.get("kind") == "DaemonSet":
                ds = self.daemonsets.get(ref.get("name", ""), ns)
                if ds is not None:
                    self._enqueue_for_ds(ds)

    def _on_pod(self, etype: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self._pod_views:
            key = object_key(pod)
            for uid in {*_owner_uid(pod), *(_owner_uid(old) if old is not None else ())}:
                tracked = self._pod_views.get(uid)
                if tracked is not None:
                    tracked.mark(key)
        self._enqueue_for_owner(pod)

    def _pod_view(self, uid: str, hash_: str) -> PodView:
        """The DaemonSet's pods at revision ``hash_``: built from all of them when first asked (or
        for a new revision), then brought up to date from the pods that changed since."""
        if not self._following_pods:
            return PodView.of(self.pods.by_index(CONTROLLER_UID_INDEX, uid), hash_)
        tracked = self._pod_views.get(uid)
        if tracked is None or tracked.view.hash != hash_ or tracked.overflowed:
            if tracked is None and len(self._pod_views) >= POD_VIEWS:
                self._pod_views.clear()  # DaemonSets long gone among them: start afresh
            view = PodView.of(self.pods.by_index(CONTROLLER_UID_INDEX, uid), hash_)
            self._pod_views[uid] = _TrackedPods(view)
            return view
        for key in tracked.dirty:
            pod = self.pods.get_by_key(key)
            tracked.view.put(key, pod if pod is not None and uid in _owner_uid(pod) else None)
        tracked.dirty.clear()
        return tracked.view

    def _on_node(self, etype: str, node: dict[str, Any], old: dict[str, Any] | None) -> None:
        if etype == "MODIFIED" and old is not None and (old["metadata"].get("labels") == node["metadata"].get(
                "labels") and (old.get("spec") or {}).get("taints") == (node.get("spec") or {}).get("taints")):
            return
        for plan in self.plans.list():
            self.queue.add(object_key(plan))

    # -- sync ------------------------------------------------------------------------------------

    async def sync(self, key: Any) -> None:
        """One decision for the plan, paced (see ``_pace``)."""
        loop = asyncio.get_running_loop()
        wait = self._not_before.get(str(key), 0.0) - loop.time()
        if wait > 0:
            # paced: the pod events of a burst collapse into the next sync instead of one each
            self.queue.add_after(key, wait)
            return
        self._computed.pop(str(key), None)
        self._wrote.discard(str(key))
        try:
            await self._sync(key)
        finally:
            self._pace(str(key), self._computed.pop(str(key), 0.0), wrote=str(key) in self._wrote)

    def _pace(self, key: str, took: float, *, wrote: bool = False) -> None:
        """Hold the plan's next sync back by SYNC_PACE_FACTOR times the CPU this one spent, and
        by at least SYNC_PACE_WRITTEN after a status write.

        ``took`` counts only observe and decide: awaits run the in-process API server too.
        Each sync observes every node and daemon pod; at thousands of nodes, syncing again after
        each pod event of a rollout kept the process (API server, DaemonSet controller, fleet)
        busy with plan syncs. As in the DaemonSet controller, the queue collapses a burst's events
        while the key waits, which bounds one plan's syncs to about a quarter of the CPU. Now that
        a sync remembers what did not change (see nodeorder.py and podview.py) it costs little, but
        during a rollout nearly each one writes new counts: the floor keeps the writes (and what
        they cost the API server and every plan watcher) to about ten a second.
        """
        wait = took * SYNC_PACE_FACTOR if took >= SYNC_PACE_MIN else 0.0
        if wrote:
            wait = max(wait, SYNC_PACE_WRITTEN)
        if wait <= 0.0:
            self._not_before.pop(key, None)
            return
        self._not_before[key] = asyncio.get_running_loop().time() + min(wait, SYNC_PACE_MAX)

    async def _sync(self, key: Any) -> None:
        namespace, name = split_key(str(key))
        plan = self.plans.get(name, namespace)
        if plan is None or plan["metadata"].get("deletionTimestamp"):
            return
        target = (plan.get("spec") or {}).get("targetRef") or {}
        ds = self.daemonsets.get(target.get("name", ""), namespace)
        if ds is None or target.get("kind") != "DaemonSet":
            status = dict(plan.get("status") or {})
            status["message"] = f"DaemonSet {target.get('name')!r} not found"
            await self._write_status(plan, status)
            return
        uid = ds["metadata"]["uid"]
        revisions = [r for r in self.revisions.by_index(CONTROLLER_UID_INDEX, uid)]
        cur = current_revision(ds, revisions)
        if cur is None:
            return  # the DaemonSet controller has not snapshotted this template yet
        hash_ = history.revision_hash(cur)
        now = time.time()
        started = time.thread_time()
        obs = observe(plan, ds, self.nodes.list(), self._pod_view(uid, hash_), hash_=hash_, now=now,
                      why_limit=WHY_LIMIT, start_times=False)  # no more than decide reads
        decision = decide(plan, update_hash=hash_, ds_generation=int(ds["metadata"].get("generation") or 0),
                          obs=obs, now=now)
        self._computed[str(key)] = time.thread_time() - started
        if decision.rollback is not None:
            generation = await self._rollback(ds, revisions, decision.status.get("stableRevision") or "",
                                              decision.rollback)
            decision.status["rollbackGeneration"] = generation
        for type_, reason, message in decision.events:
            self.recorder.event(plan, type_, reason, message)
            self.recorder.event(ds, type_, reason, f"RolloutPlan {name}: {message}")
        await self._write_status(plan, decision.status, force=decision.rollback is not None)
        if decision.requeue_after is not None:
            self.queue.add_after(key, decision.requeue_after)

    async def _write_status(self, plan: dict[str, Any], status: dict[str, Any], *, force: bool = False) -> None:
        """Write ``status``; ``force`` retries conflicts on a fresh copy of the plan.

        A conflict normally means the lister was stale, and the retried sync decides again. After a
        rollback that is not enough: the DaemonSet is already back on the stable revision, so the
        next decision could no longer tell why, and the RolledBack status must land.
        """
        if status == (plan.get("status") or {}):
            return
        ns, name = plan["metadata"]["namespace"], plan["metadata"]["name"]
        self._wrote.add(object_key(plan))
        updated = deep_copy(plan)
        for attempt in range(5):
            updated["status"] = status
            try:
                await self.client.update(PLAN_RESOURCE, updated, namespace=ns, subresource="status")
                return
            except ApiError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409 or not force or attempt == 4:
                    raise
            try:
                updated = await self.client.get(PLAN_RESOURCE, name, ns)
            except ApiError as exc:
                if exc.code == 404:
                    return
                raise

    async def _rollback(self, ds: dict[str, Any], revisions: list[dict[str, Any]], stable: str,
                        cause: str) -> int:
        """Put the DaemonSet's template back to the stable revision (``kubectl rollout undo``)."""
        rev = next((r for r in revisions if history.revision_hash(r) == stable), None)
        if rev is None:
            raise ApiError(404, "NotFound", f"stable revision {stable} of DaemonSet "
                                            f"{ds['metadata']['name']} is gone; cannot roll back")
        data = rev.get("data") or {}
        body = {"metadata": {"annotations": {CHANGE_CAUSE: cause}}, **data}
        ns = ds["metadata"]["namespace"]
        patched = await self.client.patch(DS_RESOURCE, ds["metadata"]["name"], body, namespace=ns,
                                          patch_type="strategic")
        try:  # kubectl rollout history reads the change-cause from the revision
            await self.client.patch(history.RESOURCE, rev["metadata"]["name"],
                                    {"metadata": {"annotations": {CHANGE_CAUSE: cause}}}, namespace=ns,
                                    patch_type="merge")
        except ApiError as exc:
            log.debug("annotating revision %s failed: %s", rev["metadata"]["name"], exc)
        log.info("rolled back DaemonSet %s/%s to revision %s: %s", ns, ds["metadata"]["name"], stable, cause)
        return int(patched["metadata"].get("generation") or 0)
