"""The scheduler: binds each pending pod to a node that passes every filter, best score first.

As upstream's kube-scheduler with the default profile (the plugins in
``kubeling.scheduler.plugins``): a scheduling queue (``queue.py``: priority order, back-off,
unschedulable pods retried on cluster events) of unbound pods whose schedulerName is
``default-scheduler`` and that carry no scheduling gates; a node cache built from informers
with what each node already runs; large clusters are sampled as upstream's adaptive
percentageOfNodesToScore does. An unschedulable pod gets the PodScheduled=False condition and
a FailedScheduling event with upstream's FitError message (including what preemption found);
a bound pod gets a Scheduled event. When removing lower-priority pods from a node would make
the pod fit, those pods are preempted (deleted) and the pod is nominated to that node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from typing import Any

from kubeling.api.timeutil import now_rfc3339
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_conflict, is_not_found
from kubeling.scheduler import plugins
from kubeling.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE, CycleState, NodeInfo, Obj, Status
from kubeling.scheduler.plugins import (
    node_affinity,
    node_ports,
    node_resources_fit,
    node_unschedulable,
    taint_toleration,
)
from kubeling.scheduler.queue import FLUSH_UNSCHEDULABLE_PERIOD, SchedulingQueue

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
MIN_FEASIBLE_NODES_TO_FIND = 100  # upstream's minFeasibleNodesToFind
MIN_FEASIBLE_NODES_PERCENTAGE = 5  # upstream's minFeasibleNodesPercentageToFind
# Pods are scheduled back to back for up to this long before the loop yields to everything else
# in the process (informers, the fleet, the API server): one yield per pod costs a full turn of a
# busy event loop per pod, which at thousands of pending pods is most of the scheduler's time.
SCHEDULING_SLICE = 0.01
SLICE_BACKLOG = 32  # only with at least this many pods waiting in activeQ (else yield after each pod)
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def _key(obj: Obj) -> str:
    m = obj["metadata"]
    return f"{m.get('namespace')}/{m['name']}"


def _is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def _wants_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and not spec.get("schedulingGates")
            and not pod["metadata"].get("deletionTimestamp") and not _is_terminal(pod))


def num_feasible_nodes_to_find(total: int) -> int:
    """Upstream's adaptive percentageOfNodesToScore: all below 100 nodes, then 50% - n/125, at least 5%."""
    if total < MIN_FEASIBLE_NODES_TO_FIND:
        return total
    percentage = max(50 - total // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def _histogram(total: int, statuses: dict[str, Status], absent_reason: str | None) -> str:
    counts: dict[str, int] = {}
    for st in statuses.values():
        for reason in st.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    if absent_reason and len(statuses) < total:
        counts[absent_reason] = counts.get(absent_reason, 0) + total - len(statuses)
    # upstream sorts the "<count> <reason>" strings themselves
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(total: int, statuses: dict[str, Status], *, absent_reason: str | None = None,
                      post_filter: str = "") -> str:
    """Upstream's FitError.Error() (1.32): '0/N nodes are available: <count> <reason>, ... . <post filter>'.

    ``statuses`` holds the nodes that were filtered and failed; nodes not in it (left out by a
    PreFilter result) count under ``absent_reason``. ``post_filter`` is the PostFilter (preemption)
    message, appended after a space.
    """
    msg = f"0/{total} nodes are available:"
    hist = _histogram(total, statuses, absent_reason)
    if hist:
        msg += f" {hist}."
    if post_filter:
        msg += f" {post_filter}"
    return msg


def preemption_message(total: int, statuses: dict[str, Status]) -> str:
    """DefaultPreemption's message when it finds no candidate: evaluated nodes' reasons, others not helpful."""
    return "preemption: " + fit_error_message(total, statuses, absent_reason=PREEMPTION_NOT_HELPFUL)


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *, parallel_binds: int = 64) -> None:
        self.client = client
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.recorder = EventRecorder(client, SCHEDULER_NAME)
        self.node_infos: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None  # stable order for sampling; rebuilt on add/delete
        self._next_start = 0  # upstream's nextStartNodeIndex: sampling rotates through the nodes
        self.pod_node: dict[str, str] = {}  # pod key -> node it counts against (bound or assumed)
        self.queue = SchedulingQueue()
        self._bind_slots = asyncio.Semaphore(parallel_binds)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)

    # ---- cache ----------------------------------------------------------------------------------
    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            if self.node_infos.pop(name, None) is not None:
                self._node_list = None
            return
        info = self.node_infos.get(name)
        if info is None:
            info = self.node_infos[name] = NodeInfo(node)
            self._node_list = None
            for key, n in self.pod_node.items():
                if n == name:
                    pod = self.pods.get_by_key(key)
                    if pod is not None:
                        self._account(info, key, pod, +1)
        elif info.node is not node:
            changed = _schedulability_changed(info.node, node)
            if changed:
                info.set_node(node)
            else:
                info.node = node
            if not changed:
                return
        self.queue.move_all()

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        key = _key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if etype == "DELETED" or (node and _is_terminal(pod)):
            was_counted = key in self.pod_node
            self._forget(key)
            self.queue.delete(key)
            if was_counted:
                self.queue.move_all()  # resources freed: upstream's AssignedPodDelete event
            return
        if node:
            self.queue.delete(key)
            if self.pod_node.get(key) != node:
                self._forget(key)
                self.pod_node[key] = node
                info = self.node_infos.get(node)
                if info is not None:
                    self._account(info, key, pod, +1)
            else:
                info = self.node_infos.get(node)
                if info is not None and key in info.pods:
                    info.pods[key] = pod  # keep the latest object (priority, labels) for preemption
            return
        if not _wants_scheduling(pod):
            self.queue.delete(key)
            return
        if etype == "ADDED" or old is None or _spec_changed(old, pod):
            self.queue.add(key, _priority(pod))

    def _forget(self, key: str) -> None:
        node = self.pod_node.pop(key, None)
        if node and node in self.node_infos:
            info = self.node_infos[node]
            pod = info.pods.get(key)
            if pod is not None:
                self._account(info, key, pod, -1)

    @staticmethod
    def _account(info: NodeInfo, key: str, pod: Obj, sign: int) -> None:
        if sign > 0:
            if key in info.pods:
                return
            info.pods[key] = pod
        elif info.pods.pop(key, None) is None:
            return
        for r, v in node_resources_fit.pod_requests(pod).items():
            info.requested[r] = info.requested.get(r, 0) + sign * v
        for r, v in node_resources_fit.nonzero_requests(pod).items():
            info.nonzero[r] = info.nonzero.get(r, 0) + sign * v
        for port in node_ports.host_ports(pod):
            if sign > 0:
                info.used_ports.add(port)
            else:
                info.used_ports.discard(port)

    # ---- cycle ----------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.nodes.wait_synced()
        await self.pods.wait_synced()
        flush = asyncio.create_task(self._flush_loop())
        loop = asyncio.get_running_loop()
        try:
            slice_end = loop.time() + SCHEDULING_SLICE
            while True:
                key = await self.queue.pop()
                pod = self.pods.get_by_key(key)
                if pod is None or not _wants_scheduling(pod) or key in self.pod_node:
                    self.queue.done(key)
                    continue
                await self._schedule_one(key, pod)
                if loop.time() >= slice_end or self.queue.active() < SLICE_BACKLOG:
                    await asyncio.sleep(0)  # let informer events (and everyone else) in
                    slice_end = loop.time() + SCHEDULING_SLICE
        finally:
            flush.cancel()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_UNSCHEDULABLE_PERIOD)
            self.queue.flush_unschedulable()

    def _nodes_in_order(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = list(self.node_infos.values())
            self._next_start = 0
        return self._node_list

    def find_node(self, pod: Obj) -> tuple[str | None, dict[str, Status], str | None]:
        """Filter then score: the chosen node, or None with the failed nodes' statuses and the
        reason for nodes a PreFilter left out (None if none were)."""
        state = CycleState()
        allowed = node_affinity.pre_filter(state, pod)
        statuses: dict[str, Status] = {}
        feasible: list[NodeInfo] = []
        spec = pod.get("spec") or {}
        filters = [f for f in plugins.FILTERS
                   if not (f is node_ports and not node_ports.host_ports(pod))
                   and not (f.NAME == "NodeName" and not spec.get("nodeName"))]
        absent_reason = None
        if allowed is not None:
            candidates: Any = [self.node_infos[n] for n in sorted(allowed) if n in self.node_infos]
            to_find = len(candidates)
            absent_reason = node_affinity.ERR_REASON_PREFILTER
        else:
            nodes = self._nodes_in_order()
            start = self._next_start if self._next_start < len(nodes) else 0
            candidates = itertools.chain(itertools.islice(nodes, start, None), itertools.islice(nodes, 0, start))
            to_find = num_feasible_nodes_to_find(len(nodes))
        processed = 0
        # a pod without node constraints on an untainted, uncordoned node: only NodeResourcesFit
        # can say no (the other filters pass by construction), so skip calling them
        fit = node_resources_fit.filter
        simple = state.get("constrained") is False and filters[-1] is fit and all(
            f in (node_unschedulable, taint_toleration, node_affinity, fit) for f in filters)
        for info in candidates:
            processed += 1
            if simple and info.plain:
                st = fit(state, pod, info)
                if st.ok:
                    feasible.append(info)
                    if len(feasible) >= to_find:
                        break
                else:
                    statuses[info.name] = st
                continue
            for plugin in filters:
                st = plugin.filter(state, pod, info)
                if not st.ok:
                    statuses[info.name] = st
                    break
            else:
                feasible.append(info)
                if len(feasible) >= to_find:
                    break
        if allowed is None and self._node_list:
            self._next_start = (self._next_start + processed) % len(self._node_list)
        if not feasible:
            return None, statuses, absent_reason
        if len(feasible) == 1:
            return feasible[0].name, statuses, absent_reason
        return self._select(state, pod, feasible), statuses, absent_reason

    @staticmethod
    def _select(state: CycleState, pod: Obj, feasible: list[NodeInfo]) -> str:
        totals = [0] * len(feasible)
        for plugin, weight in plugins.SCORERS:
            pre = getattr(plugin, "pre_score", None)
            if pre is not None and not pre(state, pod):
                continue
            scores = [plugin.score(state, pod, info) for info in feasible]
            norm = getattr(plugin, "normalize", None)
            if norm is not None:
                scores = norm(scores)
            for i, s in enumerate(scores):
                totals[i] += weight * s
        best = max(totals)
        return random.choice([info.name for info, t in zip(feasible, totals, strict=True) if t == best])

    async def _schedule_one(self, key: str, pod: Obj) -> None:
        node, statuses, absent_reason = self.find_node(pod)
        if node is None:
            total = len(self.node_infos)
            post, nominated = self._post_filter(pod, statuses, total)
            message = fit_error_message(total, statuses, absent_reason=absent_reason, post_filter=post)
            self.queue.failed(key)
            await self._record_unschedulable(key, pod, message, nominated)
            return
        # assume: count the pod against the node now, so the next cycle sees it, then bind
        self.queue.done(key)
        self.pod_node[key] = node
        self._account(self.node_infos[node], key, pod, +1)
        await self._bind_slots.acquire()
        task = asyncio.create_task(self._bind(key, pod, node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- preemption (DefaultPreemption's PostFilter) ---------------------------------------------
    def _post_filter(self, pod: Obj, statuses: dict[str, Status], total: int) -> tuple[str, str | None]:
        """The preemption message, and the node nominated when preemption found victims."""
        if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return "preemption: not eligible due to preemptionPolicy=Never.", None
        prio = _priority(pod)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated in self.node_infos and any(
                p["metadata"].get("deletionTimestamp") and _priority(p) < prio
                for p in self.node_infos[nominated].pods.values()):
            return "preemption: not eligible due to a terminating pod on the nominated node.", None
        evaluated: dict[str, Status] = {}
        candidates: list[tuple[int, int, str, list[str]]] = []
        for name, st in statuses.items():
            if st.code != UNSCHEDULABLE or name not in self.node_infos:
                continue
            info = self.node_infos[name]
            victims = [k for k, p in info.pods.items() if _priority(p) < prio]
            if not victims:
                evaluated[name] = Status(UNRESOLVABLE, [NO_VICTIMS])
                continue
            trial = info.clone()
            for k in victims:
                self._account(trial, k, info.pods[k], -1)
            state = CycleState()
            node_affinity.pre_filter(state, pod)
            for plugin in plugins.FILTERS:
                fst = plugin.filter(state, pod, trial)
                if not fst.ok:
                    evaluated[name] = fst
                    break
            else:
                highest = max(_priority(info.pods[k]) for k in victims)
                candidates.append((highest, len(victims), name, victims))
        if not candidates:
            return preemption_message(total, evaluated), None
        # upstream picks the node whose most important victim is least important, then fewest victims
        candidates.sort()
        _, _, node, victims = candidates[0]
        info = self.node_infos[node]
        for k in victims:
            victim = info.pods[k]
            self._spawn(self._preempt(pod, victim, node))
        return "", node

    async def _preempt(self, preemptor: Obj, victim: Obj, node: str) -> None:
        meta = victim["metadata"]
        patch = {"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": f"{SCHEDULER_NAME}: preempting to accommodate a higher priority pod",
            "lastTransitionTime": now_rfc3339()}]}}
        try:
            await self.client.patch("pods", meta["name"], patch, namespace=meta["namespace"],
                                    subresource="status", patch_type="strategic")
            await self.client.delete("pods", meta["name"], namespace=meta["namespace"])
        except ApiError as exc:
            if not is_not_found(exc):
                log.warning("preempting %s/%s failed: %s", meta["namespace"], meta["name"], exc)
            return
        self.recorder.event(victim, "Normal", "Preempted",
                            f"Preempted by pod {preemptor['metadata'].get('uid')} on node {node}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- binding and reporting ------------------------------------------------------------------
    async def _bind(self, key: str, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create("pods", binding, namespace=meta["namespace"], name=meta["name"],
                                     subresource="binding")
            self.recorder.event(pod, "Normal", "Scheduled",
                                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")
        except ApiError as exc:
            self._unassume(key, node)
            if not (is_not_found(exc) or is_conflict(exc)):
                log.warning("binding %s to %s failed: %s", key, node, exc)
                self._retry(key)
        except Exception:  # noqa: BLE001 - a network error: un-assume and retry the pod
            self._unassume(key, node)
            log.exception("binding %s failed", key)
            self._retry(key)
        finally:
            self._bind_slots.release()

    def _unassume(self, key: str, node: str) -> None:
        if self.pod_node.get(key) == node:
            fresh = self.pods.get_by_key(key)
            if fresh is None or not (fresh.get("spec") or {}).get("nodeName"):
                self._forget(key)

    def _retry(self, key: str) -> None:
        fresh = self.pods.get_by_key(key)
        if fresh is not None and _wants_scheduling(fresh):
            self.queue.priority[key] = _priority(fresh)
            self.queue.retry_after_error(key)

    async def _record_unschedulable(self, key: str, pod: Obj, message: str, nominated: str | None) -> None:
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        conds = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        status: dict[str, Any] = {}
        if not (current and current.get("status") == "False" and current.get("reason") == "Unschedulable"
                and current.get("message") == message):
            status["conditions"] = [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]
        if nominated and (pod.get("status") or {}).get("nominatedNodeName") != nominated:
            status["nominatedNodeName"] = nominated
        if not status:
            return
        meta = pod["metadata"]
        try:
            await self.client.patch("pods", meta["name"], {"status": status}, namespace=meta["namespace"],
                                    subresource="status", patch_type="strategic")
        except ApiError as exc:
            if not is_not_found(exc):
                log.info("could not record unschedulable pod %s: %s", key, exc)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t


def _schedulability_changed(old: Obj | None, new: Obj) -> bool:
    """Node changes upstream's queueing hints care about (not heartbeats)."""
    if old is None:
        return True

    def view(n: Obj) -> Any:
        return ((n.get("metadata") or {}).get("labels"), (n.get("spec") or {}).get("taints"),
                (n.get("spec") or {}).get("unschedulable"), (n.get("status") or {}).get("allocatable"))

    return view(old) != view(new)


def _spec_changed(old: Obj, new: Obj) -> bool:
    """A pending pod's update that may change where it fits (not our own status writes)."""
    return (old.get("spec") != new.get("spec")
            or (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"))
