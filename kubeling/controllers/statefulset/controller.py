"""The StatefulSet controller's moving parts: informers, event-to-key handlers and the writes.

A sync reads the StatefulSet, its pods (adopting orphans that match the selector and carry the
set's name, releasing those that stopped matching), its ControllerRevisions and the claims from
listers; works out the current and update revisions (creating, or renumbering on rollback, the
update revision); runs ``plan``; executes the planned phases in order, stopping at the first
error; writes the status when it changed; and prunes revision history. Like upstream it keeps no
expectations: pod names are fixed, so a stale cache only costs an AlreadyExists or NotFound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kubeling.api.scheduling import label_selector_is_empty, label_selector_matches
from kubeling.client import ownership
from kubeling.client.controller import run_controller
from kubeling.client.events import EventRecorder
from kubeling.client.informer import copy as deep_copy
from kubeling.client.informer import object_key, split_key
from kubeling.client.ownership import CONTROLLER_UID_INDEX, ORPHAN_INDEX
from kubeling.client.ownership import controller_ref as _controller_ref
from kubeling.client.rest import ApiError, Client
from kubeling.client.workqueue import WorkQueue
from kubeling.controllers import history
from kubeling.controllers.statefulset.plan import (
    Action,
    Plan,
    claim_owner_refs,
    claim_owner_up_to_date,
    claims_for,
    is_member_of,
    min_ready_seconds,
    ordinal_of,
    plan,
    replicas_of,
)
from kubeling.controllers.statefulset.status import count_pods, inconsistent, new_status, to_wire

log = logging.getLogger(__name__)

COMPONENT = "statefulset-controller"
STS_RESOURCE = "statefulsets.apps"
PVC_RESOURCE = "persistentvolumeclaims"
MAX_BATCH = 500

Obj = dict[str, Any]


class StatefulSetController:
    """Runs StatefulSets: ordered pods with stable names and storage; see the module docstring."""

    def __init__(self, client: Client, factory: Any, *, workers: int = 2) -> None:
        self.client = client
        self.factory = factory
        self.workers = workers
        self.sts_informer = factory.informer(STS_RESOURCE)
        self.pod_informer = factory.informer("pods", indexers=ownership.INDEXERS)
        self.rev_informer = factory.informer(history.RESOURCE, indexers=ownership.INDEXERS)
        self.pvc_informer = factory.informer(PVC_RESOURCE)
        self.queue = WorkQueue("statefulset")
        self.recorder = EventRecorder(client, COMPONENT)
        self._handlers_added = False

    async def run(self) -> None:
        if not self._handlers_added:
            self.sts_informer.add_handler(self._on_sts)
            self.pod_informer.add_handler(self._on_pod)
            self.rev_informer.add_handler(self._on_revision)
            self.pvc_informer.add_handler(self._on_claim)
            self._handlers_added = True
        self.factory.start()
        await asyncio.gather(*(inf.wait_synced() for inf in
                               (self.sts_informer, self.pod_informer, self.rev_informer, self.pvc_informer)))
        await run_controller("statefulset", self.queue, self.sync, workers=self.workers)

    # -- event handlers ------------------------------------------------------------------------

    def _enqueue(self, sts: Obj, after: float | None = None) -> None:
        if after:
            self.queue.add_after(object_key(sts), after)
        else:
            self.queue.add(object_key(sts))

    def _resolve(self, namespace: str | None, ref: Obj | None) -> Obj | None:
        if not ref or ref.get("kind") != "StatefulSet":
            return None
        sts = self.sts_informer.get(ref.get("name", ""), namespace)
        if sts is None or sts["metadata"].get("uid") != ref.get("uid"):
            return None
        return sts

    def _selecting(self, obj: Obj) -> list[Obj]:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if not labels:
            return []
        return [s for s in self.sts_informer.list(meta.get("namespace"))
                if not label_selector_is_empty((s.get("spec") or {}).get("selector"))
                and label_selector_matches((s.get("spec") or {}).get("selector"), labels)]

    def _on_sts(self, etype: str, obj: Obj, old: Obj | None) -> None:
        self._enqueue(obj)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ns = pod["metadata"].get("namespace")
        ref = _controller_ref(pod)
        if etype == "MODIFIED" and old is not None:
            if old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
                return
            old_ref = _controller_ref(old)
            if old_ref and (ref is None or old_ref.get("uid") != ref.get("uid")):
                old_sts = self._resolve(ns, old_ref)
                if old_sts is not None:
                    self._enqueue(old_sts)
        sts = self._resolve(ns, ref)
        if sts is not None:
            self._enqueue(sts)
            min_ready = min_ready_seconds(sts)
            if min_ready and etype == "MODIFIED":
                self._enqueue(sts, after=min_ready + 0.1)
            return
        if ref is None and etype != "DELETED":
            for s in self._selecting(pod):
                self._enqueue(s)

    def _on_revision(self, etype: str, rev: Obj, old: Obj | None) -> None:
        sts = self._resolve(rev["metadata"].get("namespace"), _controller_ref(rev))
        if sts is not None and etype == "DELETED":
            self._enqueue(sts)

    def _on_claim(self, etype: str, claim: Obj, old: Obj | None) -> None:
        # A claim deleted by the garbage collector may unblock a pod waiting on a stale claim.
        if etype == "DELETED":
            for s in self._selecting(claim):
                self._enqueue(s)

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: Any) -> None:
        namespace, name = split_key(str(key))
        sts = self.sts_informer.get(name, namespace)
        if sts is None:
            return
        sts = deep_copy(sts)
        sts.setdefault("kind", "StatefulSet")
        sts.setdefault("apiVersion", "apps/v1")
        selector = (sts.get("spec") or {}).get("selector")
        if label_selector_is_empty(selector):
            return
        revisions = await self._claim(sts, self.rev_informer, history.RESOURCE, member_only=False)
        pods = await self._claim(sts, self.pod_informer, "pods", member_only=True)
        revisions = history.sort_by_revision(revisions)
        current, update, collision_count = await self._revisions(sts, revisions)
        claims = {c["metadata"]["name"]: c for c in self.pvc_informer.list(namespace)}
        the_plan = plan(sts, pods, current_rev=current, update_rev=update, claims=claims, now=time.time())
        error: BaseException | None = None
        try:
            await self._execute(sts, the_plan)
        except Exception as exc:  # noqa: BLE001 - status is written before the error is reported
            error = exc
        cur_name, upd_name = current["metadata"]["name"], update["metadata"]["name"]
        counts = count_pods(the_plan.replicas + the_plan.condemned, min_ready=min_ready_seconds(sts),
                            current_rev=cur_name, update_rev=upd_name, now=time.time())
        counts["currentReplicas"] -= the_plan.rolling_deleted if error is None else 0
        status = new_status(sts, counts, current_rev=cur_name, update_rev=upd_name,
                            collision_count=collision_count)
        try:
            await self._write_status(sts, status)
        except ApiError as exc:
            error = error or exc
        try:
            await self._truncate_history(sts, pods, revisions, current, update)
        except ApiError as exc:
            error = error or exc
        if error is not None:
            raise error
        if the_plan.requeue_after:
            self._enqueue(sts, after=the_plan.requeue_after)
        elif min_ready_seconds(sts) and status["availableReplicas"] != replicas_of(sts):
            self._enqueue(sts, after=min_ready_seconds(sts))

    # -- executing a plan ----------------------------------------------------------------------

    async def _execute(self, sts: Obj, the_plan: Plan) -> None:
        for actions in the_plan.phases:
            if not actions:
                continue
            if the_plan.monotonic:
                for action in actions:
                    await self._do(sts, action)
            else:
                await self._slow_start(sts, actions)

    async def _slow_start(self, sts: Obj, actions: list[Action]) -> None:
        """slowStartBatch: batches of 1, 2, 4 … run concurrently; the first failing batch stops it."""
        pos, batch = 0, 1
        while pos < len(actions):
            chunk = actions[pos:pos + batch]
            results = await asyncio.gather(*(self._do(sts, a) for a in chunk), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            pos += len(chunk)
            batch = min(2 * batch, MAX_BATCH)

    async def _do(self, sts: Obj, action: Action) -> None:
        if action.kind == "create":
            await self._create_pod(sts, action)
        elif action.kind == "delete":
            await self._delete_pod(sts, action.pod)
        elif action.kind == "create_claims":
            await self._create_claims(sts, action.pod, action.claims)
        elif action.kind == "fix_claims":
            for claim in action.claims:
                await self.client.update(PVC_RESOURCE, claim, namespace=claim["metadata"]["namespace"])
        elif action.kind == "relabel":
            pod = action.pod
            labels = {"statefulset.kubernetes.io/pod-name": pod["metadata"]["name"],
                      "apps.kubernetes.io/pod-index": str(ordinal_of(pod))}
            await self.client.patch("pods", pod["metadata"]["name"], {"metadata": {"labels": labels}},
                                    namespace=pod["metadata"]["namespace"], patch_type="strategic")

    def _pod_event(self, verb: str, sts: Obj, pod: Obj, err: BaseException | None) -> None:
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        if err is None:
            self.recorder.event(sts, "Normal", f"Successful{verb.title()}",
                                f"{verb} Pod {name} in StatefulSet {set_name} successful")
        else:
            self.recorder.event(sts, "Warning", f"Failed{verb.title()}",
                                f"{verb} Pod {name} in StatefulSet {set_name} failed error: {_msg(err)}")

    def _claim_event(self, verb: str, sts: Obj, pod: Obj, claim: Obj, err: BaseException | None) -> None:
        pod_name, set_name, claim_name = pod["metadata"]["name"], sts["metadata"]["name"], claim["metadata"]["name"]
        if err is None:
            self.recorder.event(sts, "Normal", f"Successful{verb.title()}",
                                f"{verb} Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success")
        else:
            self.recorder.event(sts, "Warning", f"Failed{verb.title()}",
                                f"{verb} Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} "
                                f"failed error: {_msg(err)}")

    async def _create_claims(self, sts: Obj, pod: Obj, claims: list[Obj]) -> list[Obj]:
        """createPersistentVolumeClaims: create the missing ones; a claim being deleted is an error."""
        created: list[Obj] = []
        errors: list[str] = []
        for claim in claims:
            ns = claim["metadata"]["namespace"]
            try:
                created.append(await self.client.create(PVC_RESOURCE, claim, namespace=ns))
            except ApiError as exc:
                if exc.code == 409:
                    try:
                        existing = await self.client.get(PVC_RESOURCE, claim["metadata"]["name"], ns)
                    except ApiError:
                        existing = None
                    if existing is not None and existing["metadata"].get("deletionTimestamp"):
                        errors.append(f"pvc {claim['metadata']['name']} is being deleted")
                    elif existing is not None:
                        created.append(existing)
                    continue
                errors.append(f"failed to create PVC {claim['metadata']['name']}: {_msg(exc)}")
                self._claim_event("create", sts, pod, claim, exc)
                continue
            self._claim_event("create", sts, pod, claim, None)
        if errors:
            raise ApiError(500, "InternalError", "; ".join(errors))
        return created

    async def _create_pod(self, sts: Obj, action: Action) -> None:
        pod = action.pod
        ns = sts["metadata"]["namespace"]
        try:
            claims = await self._create_claims(sts, pod, action.claims)
        except ApiError as exc:
            self._pod_event("create", sts, pod, exc)
            raise
        try:
            created = await self.client.create("pods", pod, namespace=ns)
        except ApiError as exc:
            if exc.code == 409:
                raise  # the cache is behind; retried with back-off, like upstream
            self._pod_event("create", sts, pod, exc)
            raise
        # Set the claims' ownerReferences as far as possible now (the rest on a later sync).
        known = {c["metadata"]["name"]: c for c in claims}
        for c in claims_for(sts, ordinal_of(pod)).values():
            cname = c["metadata"]["name"]
            existing = known.get(cname) or self.pvc_informer.get(cname, ns)
            if existing is None or claim_owner_up_to_date(existing, sts, created):
                continue
            fixed = deep_copy(existing)
            fixed["metadata"]["ownerReferences"] = claim_owner_refs(existing, sts, created)
            try:
                await self.client.update(PVC_RESOURCE, fixed, namespace=ns)
            except ApiError as exc:
                self._pod_event("update", sts, pod, exc)
                raise
        self._pod_event("create", sts, pod, None)

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        try:
            await self.client.delete("pods", pod["metadata"]["name"], namespace=pod["metadata"]["namespace"])
        except ApiError as exc:
            if exc.code == 404:
                return
            self._pod_event("delete", sts, pod, exc)
            raise
        self._pod_event("delete", sts, pod, None)

    # -- claiming pods and revisions -----------------------------------------------------------

    async def _claim(self, sts: Obj, informer: Any, resource: str, *, member_only: bool) -> list[Obj]:
        """ClaimPods / revision adoption: owned and matching, plus orphans adopted; release the rest."""
        uid = sts["metadata"]["uid"]
        ns = sts["metadata"]["namespace"]
        selector = (sts.get("spec") or {}).get("selector")
        deleting = bool(sts["metadata"].get("deletionTimestamp"))

        def matches(obj: Obj) -> bool:
            return label_selector_matches(selector, obj["metadata"].get("labels")) and \
                (not member_only or is_member_of(sts, obj))

        claimed: list[Obj] = []
        for obj in informer.by_index(CONTROLLER_UID_INDEX, uid):
            if obj["metadata"].get("namespace") != ns:
                continue
            if matches(obj):
                claimed.append(obj)
            elif not deleting:
                await self._patch_refs(resource, obj, [{"$patch": "delete", "uid": uid}])
        if deleting:
            return claimed
        for obj in informer.by_index(ORPHAN_INDEX, ns):
            if not matches(obj) or (resource == "pods" and obj["metadata"].get("deletionTimestamp")):
                continue
            adopted = await self._patch_refs(resource, obj, [history.controller_ref(sts)])
            if adopted is not None:
                claimed.append(adopted)
        return claimed

    async def _patch_refs(self, resource: str, obj: Obj, refs: list[Obj]) -> Obj | None:
        body = {"metadata": {"ownerReferences": refs, "uid": obj["metadata"]["uid"]}}
        try:
            return await self.client.patch(resource, obj["metadata"]["name"], body,
                                           namespace=obj["metadata"]["namespace"], patch_type="strategic")
        except ApiError as exc:
            if exc.code in (404, 409, 422):
                return None
            raise

    # -- history -------------------------------------------------------------------------------

    async def _revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """getStatefulSetRevisions: (current, update, collisionCount); may create or renumber one."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        template = (sts.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels")
        annotations = sts["metadata"].get("annotations")
        number = history.next_revision(revisions)
        data = revision_data(sts)
        candidate = history.new_revision(sts, data=data, revision=number,
                                         template_labels=labels, collision_count=collision_count,
                                         annotations=annotations)
        equal = [r for r in revisions if history.equal_revision(r, candidate)]
        if equal and history.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await history.update_revision_number(self.client, equal[-1], number)
        else:
            update, collision_count = await history.create_with_collisions(
                self.client, sts, data=data, revision=number, template_labels=labels,
                collision_count=collision_count, annotations=annotations)
        wanted = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == wanted), None) or update
        return current, update, collision_count

    async def _truncate_history(self, sts: Obj, pods: list[Obj], revisions: list[Obj], current: Obj,
                                update: Obj) -> None:
        limit = (sts.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        live = {current["metadata"]["name"], update["metadata"]["name"]}
        live |= {(p["metadata"].get("labels") or {}).get(history.CONTROLLER_REVISION_HASH_LABEL, "") for p in pods}
        old = [r for r in revisions if r["metadata"]["name"] not in live]
        if limit < 0 or len(old) <= limit:
            return
        for rev in old[:len(old) - limit]:
            await history.delete_revision(self.client, rev)

    # -- status --------------------------------------------------------------------------------

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        if not inconsistent(sts, status):
            return
        for attempt in range(3):
            updated = deep_copy(sts)
            updated["status"] = to_wire(status)
            try:
                await self.client.update(STS_RESOURCE, updated, subresource="status")
                return
            except ApiError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409 or attempt == 2:
                    raise
                sts = await self.client.get(STS_RESOURCE, sts["metadata"]["name"], sts["metadata"]["namespace"])


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted(v) for v in obj]
    return obj


def revision_data(sts: Obj) -> Obj:
    """The revision's patch with its keys in Go's order (sorted), so the API server serves the very
    bytes ``kubectl rollout undo`` computes from the live object when it checks for a no-op."""
    return _sorted(history.template_patch(sts))


def _msg(err: BaseException) -> str:
    return getattr(err, "message", None) or str(err)
