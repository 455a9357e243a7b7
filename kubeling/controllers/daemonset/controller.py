"""The DaemonSet controller's moving parts: informers, event-to-key handlers, the work queue, and
the writes (pods, ControllerRevisions, status).

A sync reads only from listers: the DaemonSet, its claimed pods (adopting matching orphans and
releasing pods that stopped matching), the nodes and its revisions. It builds the history (current
revision and hash), then, once earlier writes are observed (expectations), runs ``plan`` and, for
RollingUpdate, ``rolling_update``; the resulting creates go out in slow-start batches. The status
is recomputed and written after every sync, even a failed one, but only when it changed.

What a sync costs at thousands of nodes: the placement answers are kept across syncs until a node
changes in a way that matters; the claimed pods by node live in a per-DaemonSet index fed by the
pod events (``podindex``), shared by the manage, rolling-update and status steps; a rolling step is
skipped when no pod is on an old revision; the watch event of our own status write does not queue
another sync; and a key's next sync waits a few times the CPU its last one spent (``_pace``), so
a burst of pod events collapses into few syncs instead of one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kubeling.api.scheduling import label_selector_is_empty, label_selector_matches
from kubeling.client import ownership
from kubeling.client.events import EventRecorder
from kubeling.client.informer import copy as deep_copy
from kubeling.client.informer import object_key, split_key
from kubeling.client.ownership import CONTROLLER_UID_INDEX, ORPHAN_INDEX
from kubeling.client.ownership import controller_ref as _controller_ref
from kubeling.client.rest import ApiError, Client
from kubeling.client.workqueue import ShutDown, WorkQueue
from kubeling.controllers import history
from kubeling.controllers.daemonset import holdback
from kubeling.controllers.daemonset.placement import (
    Placements,
    node_should_run_daemon_pod,
    placement_fields,
    placement_key,
    placements,
)
from kubeling.controllers.daemonset.plan import Actions, FailedPodBackoff, plan
from kubeling.controllers.daemonset.podindex import ClaimedPods, selector_key
from kubeling.controllers.daemonset.pods import (
    Pod,
    daemon_pod_template,
    is_deleting,
    is_pod_ready,
    new_daemon_pod,
    template_generation,
)
from kubeling.controllers.daemonset.rolling import rolling_update
from kubeling.controllers.daemonset.status import compute_counts, next_status

log = logging.getLogger(__name__)

COMPONENT = "daemonset-controller"
DS_RESOURCE = "daemonsets.apps"
BURST_REPLICAS = 250          # upstream's burstReplicas: most creates or deletes per sync
SLOW_START_INITIAL_BATCH = 1
EXPECTATIONS_TTL = 300.0
AMBIGUOUS_CREATE_WAIT = 15.0  # how long a create with an unknown outcome holds further creates back
PLAN_RESOURCE = "rolloutplans.v1alpha1.rollouts.kubeling.io"
SYNC_PACE_MIN = 0.002   # syncs quicker than this are not paced (small clusters)
SYNC_PACE_FACTOR = 3.0  # a key waits this many times its last sync's work before the next one
SYNC_PACE_MAX = 0.5     # the longest a key is held back after a sync


def _holdback_view(plan: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of a RolloutPlan the DaemonSet's hold-back depends on."""
    status = plan.get("status") or {}
    return (plan.get("spec"), plan["metadata"].get("deletionTimestamp"), status.get("stableRevision"),
            status.get("updateRevision"), status.get("phase"), status.get("currentStep"))


class Expectations:
    """ControllerExpectations: creates and deletes a sync still waits to see in its informers."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL) -> None:
        self.ttl = ttl
        self._exp: dict[str, list[float]] = {}  # key -> [adds, dels, timestamp]

    def set(self, key: str, adds: int, dels: int) -> None:
        self._exp[key] = [adds, dels, time.monotonic()]

    def lower(self, key: str, adds: int, dels: int) -> None:
        e = self._exp.get(key)
        if e is not None:
            e[0] -= adds
            e[1] -= dels

    def creation_observed(self, key: str) -> None:
        self.lower(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, 0, 1)

    def expire_within(self, key: str, seconds: float) -> None:
        """Let the expectations of key lapse after at most ``seconds`` (an outcome we cannot know)."""
        e = self._exp.get(key)
        if e is not None:
            e[2] = min(e[2], time.monotonic() - self.ttl + seconds)

    def satisfied(self, key: str) -> bool:
        e = self._exp.get(key)
        if e is None:
            return True
        return (e[0] <= 0 and e[1] <= 0) or time.monotonic() - e[2] > self.ttl

    def delete(self, key: str) -> None:
        self._exp.pop(key, None)


class _PlacementMemo:
    """One DaemonSet's placement answers by node name, and the nodes to ask again."""

    def __init__(self, key: bytes, answers: dict[str, tuple[bool, bool]]) -> None:
        self.key = key
        self.answers = answers
        self.dirty: set[str] = set()


class _SyncState:
    """Per-sync memo: pods adopted so far, the fresh DaemonSet used to vet adoption, the placement
    answers and the claimed pods by node (reused by later steps while no pod event came in)."""

    def __init__(self) -> None:
        self.adopted: dict[str, dict[str, Any]] = {}
        self.released: set[str] = set()
        self.fresh_checked: bool | None = None
        self.placements: Placements | None = None
        self.by_node: dict[str, list[Pod]] | None = None
        self.pods_seen = -1  # the controller's pod event count when by_node was built
        self.busy = 0.0  # seconds spent computing (not awaiting), for pacing

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Count the time of a stretch without awaits as this sync's own work."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.busy += time.perf_counter() - started


class DaemonSetController:
    """Keeps one daemon pod on every eligible node for each DaemonSet; see the module docstring."""

    def __init__(self, client: Client, factory: Any, *, workers: int = 2) -> None:
        self.client = client
        self.factory = factory
        self.workers = workers
        self.ds_informer = factory.informer(DS_RESOURCE)
        self.pod_informer = factory.informer("pods", indexers=ownership.INDEXERS)
        self.node_informer = factory.informer("nodes")
        self.rev_informer = factory.informer(history.RESOURCE, indexers=ownership.INDEXERS)
        # RolloutPlans hold nodes back during a rollout (see holdback.py)
        self.plan_informer = factory.informer(PLAN_RESOURCE)
        self.queue = WorkQueue("daemonset")
        self.recorder = EventRecorder(client, COMPONENT)
        self.expectations = Expectations()
        self.backoff = FailedPodBackoff()
        self._handlers_added = False
        # pod events seen so far: a sync reuses its claimed pods until this moves
        self._pod_events = 0
        # key -> loop time before which the key is not synced again (see _worker)
        self._not_before: dict[str, float] = {}
        # key -> resourceVersion of the DaemonSet our last status write produced (see _on_ds)
        self._own_status_rv: dict[str, str] = {}
        # key -> the placement answers of every node, kept across syncs (see _node_placements)
        self._placements: dict[str, _PlacementMemo] = {}
        # DaemonSet uid -> its claimed pods by node, kept up to date from pod events (see podindex)
        self._claimed: dict[str, ClaimedPods] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        if not self._handlers_added:
            self.ds_informer.add_handler(self._on_ds)
            self.pod_informer.add_handler(self._on_pod)
            self.node_informer.add_handler(self._on_node)
            self.rev_informer.add_handler(self._on_revision)
            self.plan_informer.add_handler(self._on_plan)
            self._handlers_added = True
        self.factory.start()
        await asyncio.gather(*(inf.wait_synced() for inf in
                               (self.ds_informer, self.pod_informer, self.node_informer, self.rev_informer,
                                self.plan_informer)))
        tasks = [asyncio.create_task(self._worker(), name=f"daemonset-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._backoff_gc(), name="daemonset-backoff-gc"))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _backoff_gc(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.backoff.gc(time.time())

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            wait = self._not_before.get(key, 0.0) - loop.time()
            if wait > 0:
                # paced: the events of a burst collapse into the next sync instead of one each
                self.queue.add_after(key, wait)
                self.queue.done(key)
                continue
            try:
                await self.sync(str(key))
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.INFO if isinstance(exc, ApiError) and exc.code == 409 else logging.WARNING
                log.log(level, "error syncing daemon set %s: %s", key, exc, exc_info=not isinstance(exc, ApiError))
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _pace(self, key: str, took: float) -> None:
        """Hold the key's next sync back by SYNC_PACE_FACTOR times the CPU this one spent computing
        (``took``: waiting for the API server does not count), at most SYNC_PACE_MAX.

        A sync reads every node and pod of its DaemonSet: at thousands of nodes, syncing again for
        each of a burst's pod events would keep the process (API server, scheduler and fleet
        included) busy with syncs. Upstream's queue collapses a key's events while it is queued;
        pacing keeps it queued long enough to collapse a burst, and bounds one DaemonSet's syncs to
        about a quarter of the CPU while events keep coming.
        """
        if took < SYNC_PACE_MIN:
            self._not_before.pop(key, None)
            return
        hold = min(took * SYNC_PACE_FACTOR, SYNC_PACE_MAX)
        self._not_before[key] = asyncio.get_running_loop().time() + hold

    # -- event handlers: everything becomes DaemonSet keys --------------------------------------

    def _enqueue(self, ds: dict[str, Any], after: float | None = None) -> None:
        key = object_key(ds)
        if after:
            self.queue.add_after(key, after)
        else:
            self.queue.add(key)

    def _resolve(self, namespace: str | None, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if not ref or ref.get("kind") != "DaemonSet":
            return None
        ds = self.ds_informer.get(ref.get("name", ""), namespace)
        if ds is None or ds["metadata"].get("uid") != ref.get("uid"):
            return None
        return ds

    def _selecting(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """DaemonSets in the object's namespace whose selector matches its labels."""
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if not labels:
            return []
        result = []
        for ds in self.ds_informer.list(meta.get("namespace")):
            selector = (ds.get("spec") or {}).get("selector")
            if not label_selector_is_empty(selector) and label_selector_matches(selector, labels):
                result.append(ds)
        return result

    def _on_ds(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        key = object_key(obj)
        if etype == "DELETED":
            self.expectations.delete(key)
            self._own_status_rv.pop(key, None)
            self._not_before.pop(key, None)
            self._placements.pop(key, None)
            self._claimed.pop(obj["metadata"].get("uid") or "", None)
        elif etype == "MODIFIED" and obj["metadata"].get("resourceVersion") == self._own_status_rv.get(key):
            return  # our own status write: the sync that made it already saw everything it changed
        self._enqueue(obj)

    def _on_pod(self, etype: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        self._pod_events += 1
        ns = pod["metadata"].get("namespace")
        ref = _controller_ref(pod)
        self._mark_claimed(pod, ref, old)
        if etype == "ADDED":
            ds = self._resolve(ns, ref)
            if ds is not None:
                key = object_key(ds)
                if is_deleting(pod):
                    self.expectations.deletion_observed(key)
                else:
                    self.expectations.creation_observed(key)
                self._enqueue(ds)
            elif ref is None:
                for ds in self._selecting(pod):
                    self._enqueue(ds)
            return
        if etype == "DELETED":
            ds = self._resolve(ns, ref)
            if ds is not None:
                if old is None or not is_deleting(old):
                    self.expectations.deletion_observed(object_key(ds))
                self._enqueue(ds)
            return
        if old is not None and old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return
        old_ref = _controller_ref(old) if old else None
        if old_ref and (ref is None or old_ref.get("uid") != ref.get("uid")):
            old_ds = self._resolve(ns, old_ref)
            if old_ds is not None:
                self._enqueue(old_ds)
        ds = self._resolve(ns, ref)
        if ds is not None:
            if is_deleting(pod) and (old is None or not is_deleting(old)):
                self.expectations.deletion_observed(object_key(ds))
            self._enqueue(ds)
            min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
            if min_ready and old is not None and is_pod_ready(old) != is_pod_ready(pod):
                self._enqueue(ds, after=min_ready + 1)
            return
        if ref is None:
            labels_changed = old is None or (old["metadata"].get("labels") != pod["metadata"].get("labels"))
            if labels_changed or old_ref is not None:
                for ds in self._selecting(pod):
                    self._enqueue(ds)

    def _mark_claimed(self, pod: dict[str, Any], ref: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        """Note the pod as changed for the DaemonSets whose claimed-pod index may hold it."""
        if not self._claimed:
            return
        key = object_key(pod)
        for r in (ref, _controller_ref(old) if old is not None else None):
            index = self._claimed.get(r.get("uid") or "") if r else None
            if index is not None:
                index.mark(key)

    def _on_node(self, etype: str, node: dict[str, Any], old: dict[str, Any] | None) -> None:
        if etype == "MODIFIED" and old is not None and placement_fields(old) == placement_fields(node):
            return
        name = node["metadata"]["name"]
        for memo in self._placements.values():
            memo.dirty.add(name)
        for ds in self.ds_informer.list():
            now = node_should_run_daemon_pod(node, ds)
            if etype == "ADDED":
                if now[0]:
                    self._enqueue(ds)
            elif etype == "DELETED" or old is None or node_should_run_daemon_pod(old, ds) != now:
                self._enqueue(ds)

    def _on_revision(self, etype: str, rev: dict[str, Any], old: dict[str, Any] | None) -> None:
        ns = rev["metadata"].get("namespace")
        ref = _controller_ref(rev)
        ds = self._resolve(ns, ref)
        if ds is not None:
            self._enqueue(ds)
        elif ref is None and etype != "DELETED":
            for ds in self._selecting(rev):
                self._enqueue(ds)

    def _on_plan(self, etype: str, plan: dict[str, Any], old: dict[str, Any] | None) -> None:
        # the plan controller writes its status (counts, per-node reasons) often during a rollout;
        # only what the hold-back reads (see holdback.compute) calls for a DaemonSet sync
        if etype == "MODIFIED" and old is not None and _holdback_view(plan) == _holdback_view(old):
            return
        ns = plan["metadata"].get("namespace")
        for obj in (plan, old):
            name = (((obj or {}).get("spec") or {}).get("targetRef") or {}).get("name")
            ds = self.ds_informer.get(name, ns) if name else None
            if ds is not None:
                self._enqueue(ds)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        ds = self.ds_informer.get(name, namespace)
        if ds is None:
            self.expectations.delete(key)
            return
        selector = (ds.get("spec") or {}).get("selector")
        if label_selector_is_empty(selector):
            self.recorder.event(ds, "Warning", "SelectingAll",
                                "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        if ds["metadata"].get("deletionTimestamp"):
            # The garbage collector removes pods and revisions; status would be meaningless.
            return
        state = _SyncState()
        try:
            await self._sync(key, ds, state)
        finally:
            self._pace(key, state.busy)

    async def _sync(self, key: str, ds: dict[str, Any], state: _SyncState) -> None:
        nodes = self.node_informer.list()
        with state.computing():
            state.placements = self._node_placements(key, ds, nodes)
        cur, old = await self._construct_history(ds, state)
        hash_ = history.revision_hash(cur)
        if not self.expectations.satisfied(key):
            await self._update_status(ds, nodes, hash_, state, observe_generation=False)
            return
        error: BaseException | None = None
        try:
            await self._update_daemonset(ds, nodes, hash_, key, old, state)
        except ApiError as exc:
            error = exc
        try:
            await self._update_status(ds, nodes, hash_, state, observe_generation=True)
        except ApiError as exc:
            error = error or exc
        if error is not None:
            raise error

    def _node_placements(self, key: str, ds: dict[str, Any], nodes: list[dict[str, Any]]) -> Placements:
        """Every node's placement answer for ds, kept across syncs: only the nodes that changed in a
        way that matters (see _on_node) are asked again, unless the DaemonSet's placement fields
        changed. The nodes asked again count as changed for the status counts too."""
        pkey = placement_key(ds)
        memo = self._placements.get(key)
        if pkey is None or memo is None or memo.key != pkey:
            answers = placements(ds, nodes)
            if pkey is not None:
                self._placements[key] = _PlacementMemo(pkey, answers)
            return answers
        if memo.dirty:
            changed, memo.dirty = memo.dirty, set()
            for name in changed:
                node = self.node_informer.get(name)
                if node is None:
                    memo.answers.pop(name, None)
                else:
                    memo.answers[name] = node_should_run_daemon_pod(node, ds)
            index = self._claimed.get(ds["metadata"]["uid"])
            if index is not None:
                index.nodes_changed(changed)
        return memo.answers

    async def _update_daemonset(self, ds: dict[str, Any], nodes: list[dict[str, Any]], hash_: str, key: str,
                                old: list[dict[str, Any]], state: _SyncState) -> None:
        by_node = await self._daemon_pods(ds, state)
        now = time.time()
        with state.computing():
            hold = holdback.compute(ds, self.plan_informer.list(ds["metadata"].get("namespace")), nodes, by_node,
                                    hash_=hash_, revisions=old, placements=state.placements)
            actions = plan(ds, nodes, by_node, hash_=hash_, backoff=self.backoff, now=now,
                           placements=state.placements)
        for type_, reason, message in actions.events:
            self.recorder.event(ds, type_, reason, message)
        if actions.requeue_after is not None:
            self._enqueue(ds, after=actions.requeue_after)
        await self._sync_nodes(ds, actions, hash_, hold)
        if self.expectations.satisfied(key):
            strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
            if strategy == "RollingUpdate":
                await self._rolling_step(ds, nodes, hash_, hold, state)
        await self._cleanup_history(ds, old, state)

    async def _rolling_step(self, ds: dict[str, Any], nodes: list[dict[str, Any]], hash_: str,
                            hold: holdback.HoldBack | None, state: _SyncState) -> None:
        by_node = await self._daemon_pods(ds, state)
        index = self._claimed.get(ds["metadata"]["uid"])
        if index is not None and index.by_node is by_node and not index.has_outdated(hash_, template_generation(ds)):
            return  # every pod is on the current revision: a step would neither delete nor surge
        with state.computing():
            step = rolling_update(ds, nodes, by_node, hash_=hash_, now=time.time(),
                                  allowed=hold.allowed if hold is not None else None,
                                  max_unavailable_override=hold.max_unavailable if hold is not None else None,
                                  placements=state.placements)
        await self._sync_nodes(ds, step, hash_, hold)

    async def _sync_nodes(self, ds: dict[str, Any], actions: Actions, hash_: str,
                          hold: holdback.HoldBack | None = None) -> None:
        """The only writer of pods: creates in slow-start batches, deletes in parallel.

        Under a RolloutPlan's hold-back, pods for held-back nodes come from the stable revision.
        """
        key = object_key(ds)
        to_create = actions.create_on_nodes[:BURST_REPLICAS]
        to_delete = list(dict.fromkeys(actions.delete_pods))[:BURST_REPLICAS]
        self.expectations.set(key, len(to_create), len(to_delete))
        if not to_create and not to_delete:
            return
        errors: list[BaseException] = []
        generation = template_generation(ds)
        if generation is None:
            generation = (ds.get("metadata") or {}).get("generation")
        template = daemon_pod_template(ds, generation=generation, hash_=hash_)
        stable_template = None
        if hold is not None and hold.stable_template is not None:
            stable_ds = {**ds, "spec": {**(ds.get("spec") or {}), "template": hold.stable_template}}
            stable_template = daemon_pod_template(stable_ds, generation=None, hash_=hold.stable_hash)

        def template_for(node_name: str) -> dict[str, Any]:
            if stable_template is not None and hold is not None and node_name not in hold.allowed:
                return stable_template
            return template

        pos, batch = 0, min(len(to_create), SLOW_START_INITIAL_BATCH)
        while pos < len(to_create):
            results = await asyncio.gather(*(self._create_pod(ds, template_for(n), n)
                                             for n in to_create[pos:pos + batch]),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for exc in failed:
                if isinstance(exc, ApiError) and exc.code != 504:
                    self.expectations.creation_observed(key)  # the server answered: nothing was created
                else:
                    # the connection broke after sending: the pod may exist. Keep expecting it (the
                    # informer will show it) for a short while rather than risk a second daemon pod.
                    self.expectations.expire_within(key, AMBIGUOUS_CREATE_WAIT)
                    self._enqueue(ds, after=AMBIGUOUS_CREATE_WAIT + 0.5)
                errors.append(exc)
            pos += batch
            skipped = len(to_create) - pos
            if failed and skipped > 0:
                # The rest waits for a later sync, so a failing create does not flood the API.
                self.expectations.lower(key, skipped, 0)
                break
            batch = min(2 * batch, skipped)
        results = await asyncio.gather(*(self._delete_pod(ds, name) for name in to_delete), return_exceptions=True)
        for name, res in zip(to_delete, results, strict=True):
            if isinstance(res, BaseException):
                self.expectations.deletion_observed(key)
                if not (isinstance(res, ApiError) and res.code == 404):
                    errors.append(res)
                    log.debug("deleting pod %s failed: %s", name, res)
        if errors:
            raise errors[0]

    async def _create_pod(self, ds: dict[str, Any], template: dict[str, Any], node_name: str) -> None:
        pod = new_daemon_pod(template, ds, node_name)
        try:
            created = await self.client.create("pods", pod, namespace=ds["metadata"]["namespace"])
        except ApiError as exc:
            causes = (exc.status.get("details") or {}).get("causes") or []
            if any(c.get("type") == "NamespaceTerminating" for c in causes):
                return
            self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc.message or exc}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod(self, ds: dict[str, Any], name: str) -> None:
        try:
            await self.client.delete("pods", name, namespace=ds["metadata"]["namespace"])
        except ApiError as exc:
            if exc.code != 404:
                self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {exc.message or exc}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    # -- claiming pods and revisions (adoption and release) -------------------------------------

    async def _can_adopt(self, ds: dict[str, Any], state: _SyncState) -> bool:
        """RecheckDeletionTimestamp: adopt only for a live DaemonSet with this very uid."""
        if state.fresh_checked is None:
            try:
                fresh = await self.client.get(DS_RESOURCE, ds["metadata"]["name"], ds["metadata"]["namespace"])
            except ApiError as exc:
                if exc.code != 404:
                    raise
                fresh = None
            state.fresh_checked = bool(fresh and fresh["metadata"].get("uid") == ds["metadata"].get("uid")
                                       and not fresh["metadata"].get("deletionTimestamp"))
        return state.fresh_checked

    async def _claim(self, ds: dict[str, Any], informer: Any, resource: str, state: _SyncState,
                     *, skip_deleting: bool) -> list[dict[str, Any]]:
        uid = ds["metadata"]["uid"]
        ns = ds["metadata"]["namespace"]
        selector = (ds.get("spec") or {}).get("selector")
        claimed: list[dict[str, Any]] = []
        for obj in informer.by_index(CONTROLLER_UID_INDEX, uid):
            if obj["metadata"].get("namespace") != ns:
                continue
            if label_selector_matches(selector, obj["metadata"].get("labels")):
                claimed.append(obj)
            elif not ds["metadata"].get("deletionTimestamp") and obj["metadata"]["uid"] not in state.released:
                state.released.add(obj["metadata"]["uid"])
                await self._release(resource, obj, uid)
        for obj in informer.by_index(ORPHAN_INDEX, ns):
            name = obj["metadata"]["name"]
            if not label_selector_matches(selector, obj["metadata"].get("labels")):
                continue
            if skip_deleting and is_deleting(obj):
                continue
            memo = f"{resource}/{name}"
            if memo in state.adopted:
                claimed.append(state.adopted[memo])
                continue
            if not await self._can_adopt(ds, state):
                continue
            adopted = await self._adopt(resource, obj, ds)
            if adopted is not None:
                state.adopted[memo] = adopted
                claimed.append(adopted)
        return claimed

    async def _adopt(self, resource: str, obj: dict[str, Any], ds: dict[str, Any]) -> dict[str, Any] | None:
        body = {"metadata": {"ownerReferences": [history.controller_ref(ds)], "uid": obj["metadata"]["uid"]}}
        try:
            return await self.client.patch(resource, obj["metadata"]["name"], body,
                                           namespace=obj["metadata"]["namespace"], patch_type="strategic")
        except ApiError as exc:
            if exc.code in (404, 409, 422):
                return None  # gone, or someone else got there first
            raise

    async def _release(self, resource: str, obj: dict[str, Any], owner_uid: str) -> None:
        body = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                             "uid": obj["metadata"]["uid"]}}
        try:
            await self.client.patch(resource, obj["metadata"]["name"], body,
                                    namespace=obj["metadata"]["namespace"], patch_type="strategic")
        except ApiError as exc:
            if exc.code not in (404, 409, 422):
                raise

    async def _claim_pods(self, ds: dict[str, Any], state: _SyncState) -> list[dict[str, Any]]:
        return await self._claim(ds, self.pod_informer, "pods", state, skip_deleting=True)

    async def _daemon_pods(self, ds: dict[str, Any], state: _SyncState) -> dict[str, list[Pod]]:
        """The claimed pods by node (getNodesToDaemonPods), as the informer holds them now.

        Manage, rolling update and status each ask. The DaemonSet's ClaimedPods index applies only
        the pods changed since it was last asked (nothing at all when no pod event came in); the
        full claim (adoption, release) runs when the index cannot decide alone.
        """
        seen = self._pod_events
        if state.by_node is not None and state.pods_seen == seen:
            return state.by_node
        uid = ds["metadata"]["uid"]
        index = self._claimed.get(uid)
        if index is None:
            index = self._claimed[uid] = ClaimedPods(uid, ds["metadata"].get("namespace") or "")
        with state.computing():
            fresh = not self._orphans_to_adopt(ds) and index.refresh(ds, self.pod_informer.get_by_key)
        if not fresh:
            index.invalidate()  # changes from here on are applied after the claim below
            selector = selector_key(ds)
            started = time.perf_counter()
            pods = await self._claim_pods(ds, state)
            with state.computing():
                index.rebuild(pods, selector)
            if not state.adopted and not state.released and state.fresh_checked is None:
                state.busy += time.perf_counter() - started  # no await happened: all of it was ours
        state.by_node = index.by_node
        state.pods_seen = seen
        return state.by_node

    def _orphans_to_adopt(self, ds: dict[str, Any]) -> bool:
        selector = (ds.get("spec") or {}).get("selector")
        return any(not is_deleting(obj) and label_selector_matches(selector, obj["metadata"].get("labels"))
                   for obj in self.pod_informer.by_index(ORPHAN_INDEX, ds["metadata"].get("namespace") or ""))

    # -- history -------------------------------------------------------------------------------

    async def _construct_history(self, ds: dict[str, Any], state: _SyncState
                                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        revisions = await self._claim(ds, self.rev_informer, history.RESOURCE, state, skip_deleting=False)
        current: list[dict[str, Any]] = []
        old: list[dict[str, Any]] = []
        for rev in revisions:
            labels = rev["metadata"].get("labels") or {}
            if history.CONTROLLER_REVISION_HASH_LABEL not in labels:
                fixed = deep_copy(rev)
                fixed["metadata"].setdefault("labels", {})[history.CONTROLLER_REVISION_HASH_LABEL] = \
                    rev["metadata"]["name"]
                rev = await self.client.update(history.RESOURCE, fixed)
            (current if history.matches_template(ds, rev) else old).append(rev)
        number = history.max_revision(old) + 1
        if not current:
            return await self._snapshot(ds, number), old
        cur = await self._dedup(ds, current)
        if history.revision_number(cur) < number:
            cur = await self._raise_revision(cur, number)
        return cur, old

    async def _raise_revision(self, rev: dict[str, Any], number: int) -> dict[str, Any]:
        try:
            return await history.update_revision_number(self.client, rev, number)
        except ApiError as exc:
            if exc.code != 409:
                raise
            fresh = await self.client.get(history.RESOURCE, rev["metadata"]["name"], rev["metadata"]["namespace"])
            if history.revision_number(fresh) >= number:
                return fresh
            return await history.update_revision_number(self.client, fresh, number)

    async def _snapshot(self, ds: dict[str, Any], number: int) -> dict[str, Any]:
        collision_count = (ds.get("status") or {}).get("collisionCount")
        template = (ds.get("spec") or {}).get("template") or {}
        rev = history.new_revision(ds, data=history.template_patch(ds), revision=number,
                                   template_labels=(template.get("metadata") or {}).get("labels"),
                                   collision_count=collision_count,
                                   annotations=(ds.get("metadata") or {}).get("annotations"))
        try:
            return await history.create_revision(self.client, rev)
        except ApiError as exc:
            if exc.code != 409:
                raise
            existing = await self.client.get(history.RESOURCE, rev["metadata"]["name"], ds["metadata"]["namespace"])
            if history.matches_template(ds, existing):
                return existing
            # A different template holds our name: bump collisionCount so the next hash differs.
            fresh = await self.client.get(DS_RESOURCE, ds["metadata"]["name"], ds["metadata"]["namespace"])
            fresh_count = (fresh.get("status") or {}).get("collisionCount")
            if fresh_count != collision_count:
                raise ApiError(409, "Conflict", f"found a stale collision count ({collision_count}, expected "
                               f"{fresh_count}) of DaemonSet \"{ds['metadata']['name']}\" while processing; will "
                               "retry until it is updated") from exc
            fresh.setdefault("status", {})["collisionCount"] = (fresh_count or 0) + 1
            await self.client.update(DS_RESOURCE, fresh, subresource="status")
            raise

    async def _dedup(self, ds: dict[str, Any], current: list[dict[str, Any]]) -> dict[str, Any]:
        """Several revisions hold the current template: keep the newest, move pods off the rest."""
        if len(current) == 1:
            return current[0]
        keep = history.sort_by_revision(current)[-1]
        keep_hash = history.revision_hash(keep)
        for dup in current:
            if dup is keep:
                continue
            dup_hash = history.revision_hash(dup)
            for pod in self.pod_informer.by_index(CONTROLLER_UID_INDEX, ds["metadata"]["uid"]):
                if (pod["metadata"].get("labels") or {}).get(history.CONTROLLER_REVISION_HASH_LABEL) == dup_hash:
                    with contextlib.suppress(ApiError):
                        await self.client.patch("pods", pod["metadata"]["name"],
                                                {"metadata": {"labels": {
                                                    history.CONTROLLER_REVISION_HASH_LABEL: keep_hash}}},
                                                namespace=pod["metadata"]["namespace"])
            await history.delete_revision(self.client, dup)
        return keep

    async def _cleanup_history(self, ds: dict[str, Any], old: list[dict[str, Any]], state: _SyncState) -> None:
        limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        if len(old) <= limit:
            return
        pods = await self._claim(ds, self.pod_informer, "pods", state, skip_deleting=False)
        live = {h for p in pods if (h := (p["metadata"].get("labels") or {}).get(
            history.CONTROLLER_REVISION_HASH_LABEL))}
        for rev in history.revisions_to_prune(old, limit, live):
            await history.delete_revision(self.client, rev)

    # -- status --------------------------------------------------------------------------------

    def _note_own_status(self, written: Any) -> None:
        """Remember the version our status write produced, so its watch event does not requeue."""
        rv = (written.get("metadata") or {}).get("resourceVersion") if isinstance(written, dict) else None
        if rv:
            self._own_status_rv[object_key(written)] = rv

    async def _update_status(self, ds: dict[str, Any], nodes: Iterable[dict[str, Any]], hash_: str,
                             state: _SyncState, *, observe_generation: bool) -> None:
        nodes = list(nodes)
        by_node = await self._daemon_pods(ds, state)
        index = self._claimed.get(ds["metadata"]["uid"])
        with state.computing():
            if index is not None and index.by_node is by_node and state.placements is not None:
                counts = index.counts.counts(ds, nodes, by_node, index.take_changed_nodes(), hash_=hash_,
                                             now=time.time(), placements=state.placements)
            else:
                counts = compute_counts(ds, nodes, by_node, hash_=hash_, now=time.time(),
                                        placements=state.placements)
        status = next_status(ds, counts, observe_generation=observe_generation)
        if status is not None:
            updated = {**ds, "status": status}  # the informer's object stays untouched
            try:
                self._note_own_status(await self.client.update(DS_RESOURCE, updated, subresource="status"))
            except ApiError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409:
                    raise
                fresh = await self.client.get(DS_RESOURCE, ds["metadata"]["name"], ds["metadata"]["namespace"])
                status = next_status(fresh, counts, observe_generation=observe_generation)
                if status is not None:
                    fresh["status"] = status
                    self._note_own_status(await self.client.update(DS_RESOURCE, fresh, subresource="status"))
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and counts["numberReady"] != counts["numberAvailable"]:
            self._enqueue(ds, after=min_ready)
