"""The scheduler: binds each pending pod to a node that passes every filter, best score first.

As upstream's kube-scheduler with the default profile (the plugins in
``kubeling.scheduler.plugins``): a priority queue of unbound pods whose
schedulerName is ``default-scheduler``; a node cache built from informers with
what each node already runs; an unschedulable pod gets the PodScheduled=False
condition and a FailedScheduling event with upstream's message, and is retried
when the cluster changes (a node added or updated, a pod leaving).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from typing import Any

from kubeling.api.timeutil import now_rfc3339
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_conflict, is_not_found
from kubeling.scheduler import plugins
from kubeling.scheduler.framework import UNRESOLVABLE, CycleState, NodeInfo, Obj, Status
from kubeling.scheduler.plugins import node_affinity, node_ports, node_resources_fit

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
UNSCHEDULABLE_FLUSH = 60.0  # upstream: podMaxInUnschedulablePodsDuration is 5 min; retry sooner here


def _key(obj: Obj) -> str:
    m = obj["metadata"]
    return f"{m.get('namespace')}/{m['name']}"


def _is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _wants_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and not pod["metadata"].get("deletionTimestamp") and not _is_terminal(pod))


def fit_error_message(total: int, statuses: dict[str, Status]) -> str:
    """Upstream's FitError text: '0/3 nodes are available: 1 node(s) had ..., 2 ... . preemption: ...'."""
    counts: dict[str, int] = {}
    for st in statuses.values():
        for reason in st.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    msg = f"0/{total} nodes are available"
    if parts:
        msg += ": " + ", ".join(parts)
    msg += "."
    # preemption is not implemented: say what upstream says when it cannot help
    msg += f" preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    return msg


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *, parallel_binds: int = 64) -> None:
        self.client = client
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.recorder = EventRecorder(client, SCHEDULER_NAME)
        self.node_infos: dict[str, NodeInfo] = {}
        self.pod_node: dict[str, str] = {}  # pod key -> node it counts against (bound or assumed)
        self._heap: list[tuple[int, int, str]] = []
        self._queued: set[str] = set()
        self._unschedulable: dict[str, str] = {}  # pod key -> last message
        self._counter = itertools.count()
        self._wake = asyncio.Event()
        self._bind_slots = asyncio.Semaphore(parallel_binds)
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)

    # ---- cache ----------------------------------------------------------------------------------
    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            self.node_infos.pop(name, None)
            return
        info = self.node_infos.get(name)
        if info is None:
            self.node_infos[name] = NodeInfo(node)
            for key, n in self.pod_node.items():
                if n == name:
                    pod = self.pods.get_by_key(key)
                    if pod is not None:
                        self._account(self.node_infos[name], key, pod, +1)
        else:
            info.node = node
        if etype == "ADDED" or _schedulability_changed(old, node):
            self._requeue_unschedulable()

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        key = _key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if etype == "DELETED" or (node and _is_terminal(pod)):
            self._forget(key)
            self._queued.discard(key)
            self._unschedulable.pop(key, None)
            self._requeue_unschedulable()
            return
        if node:
            self._unschedulable.pop(key, None)
            if self.pod_node.get(key) != node:
                self._forget(key)
                self.pod_node[key] = node
                info = self.node_infos.get(node)
                if info is not None:
                    self._account(info, key, pod, +1)
            return
        if _wants_scheduling(pod) and key not in self._unschedulable:
            self._enqueue(pod)

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
        else:
            if info.pods.pop(key, None) is None:
                return
        for r, v in node_resources_fit.pod_requests(pod).items():
            info.requested[r] = info.requested.get(r, 0) + sign * v
        for port in node_ports.host_ports(pod):
            if sign > 0:
                info.used_ports.add(port)
            else:
                info.used_ports.discard(port)

    # ---- queue ----------------------------------------------------------------------------------
    def _enqueue(self, pod: Obj) -> None:
        key = _key(pod)
        if key in self._queued:
            return
        self._queued.add(key)
        prio = int((pod.get("spec") or {}).get("priority") or 0)
        # PrioritySort: higher priority first, then first come first served
        heapq.heappush(self._heap, (-prio, next(self._counter), key))
        self._wake.set()

    def _requeue_unschedulable(self) -> None:
        if not self._unschedulable:
            return
        keys = list(self._unschedulable)
        self._unschedulable.clear()
        for key in keys:
            pod = self.pods.get_by_key(key)
            if pod is not None and _wants_scheduling(pod):
                self._enqueue(pod)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(UNSCHEDULABLE_FLUSH)
            self._requeue_unschedulable()

    # ---- cycle ----------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.nodes.wait_synced()
        await self.pods.wait_synced()
        flush = asyncio.create_task(self._flush_loop())
        try:
            while True:
                while not self._heap:
                    self._wake.clear()
                    await self._wake.wait()
                _, _, key = heapq.heappop(self._heap)
                self._queued.discard(key)
                pod = self.pods.get_by_key(key)
                if pod is None or not _wants_scheduling(pod) or key in self.pod_node:
                    continue
                await self._schedule_one(key, pod)
                # let informer events in between pods
                await asyncio.sleep(0)
        finally:
            flush.cancel()

    def find_node(self, pod: Obj) -> tuple[str | None, dict[str, Status]]:
        """Filter then score: the chosen node, or None with each node's failure."""
        state = CycleState()
        allowed = node_affinity.pre_filter(state, pod)
        statuses: dict[str, Status] = {}
        feasible: list[NodeInfo] = []
        if allowed is None:
            candidates = list(self.node_infos.values())
        else:
            candidates = [self.node_infos[n] for n in allowed if n in self.node_infos]
            for name in self.node_infos.keys() - allowed if len(allowed) < len(self.node_infos) else ():
                statuses[name] = Status(UNRESOLVABLE, [node_affinity.ERR_REASON_POD], node_affinity.NAME)
        for info in candidates:
            for plugin in plugins.FILTERS:
                st = plugin.filter(state, pod, info)
                if not st.ok:
                    statuses[info.name] = st
                    break
            else:
                feasible.append(info)
        if not feasible:
            return None, statuses
        if len(feasible) == 1:
            return feasible[0].name, statuses
        best: list[str] = []
        best_score = -1
        for info in feasible:
            score = sum(weight * plugin.score(state, pod, info) for plugin, weight in plugins.SCORERS)
            if score > best_score:
                best, best_score = [info.name], score
            elif score == best_score:
                best.append(info.name)
        return random.choice(best), statuses

    async def _schedule_one(self, key: str, pod: Obj) -> None:
        node, statuses = self.find_node(pod)
        if node is None:
            await self._record_unschedulable(key, pod, fit_error_message(len(self.node_infos), statuses))
            return
        # assume: count the pod against the node now, so the next cycle sees it, then bind
        self.pod_node[key] = node
        self._account(self.node_infos[node], key, pod, +1)
        await self._bind_slots.acquire()
        asyncio.create_task(self._bind(key, pod, node))

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
            if self.pod_node.get(key) == node:
                self._forget(key)
            if not (is_not_found(exc) or is_conflict(exc)):
                log.warning("binding %s to %s failed: %s", key, node, exc)
                fresh = self.pods.get_by_key(key)
                if fresh is not None and _wants_scheduling(fresh):
                    self._enqueue(fresh)
        except Exception:  # noqa: BLE001 - a network error: un-assume and retry the pod
            if self.pod_node.get(key) == node:
                self._forget(key)
            log.exception("binding %s failed", key)
            fresh = self.pods.get_by_key(key)
            if fresh is not None and _wants_scheduling(fresh):
                self._unschedulable[key] = "bind error"
        finally:
            self._bind_slots.release()

    async def _record_unschedulable(self, key: str, pod: Obj, message: str) -> None:
        self._unschedulable[key] = message
        conds = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("message") == message:
            return
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        meta = pod["metadata"]
        patch = {"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]}}
        try:
            await self.client.patch("pods", meta["name"], patch, namespace=meta["namespace"],
                                    subresource="status", patch_type="strategic")
        except ApiError as exc:
            if not is_not_found(exc):
                log.info("could not record unschedulable pod %s: %s", key, exc)


def _schedulability_changed(old: Obj | None, new: Obj) -> bool:
    if old is None:
        return True

    def view(n: Obj) -> Any:
        return ((n.get("metadata") or {}).get("labels"), (n.get("spec") or {}).get("taints"),
                (n.get("spec") or {}).get("unschedulable"), (n.get("status") or {}).get("allocatable"))

    return view(old) != view(new)
