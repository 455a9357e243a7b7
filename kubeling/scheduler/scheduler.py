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

Cheap per pod: what plugins read of the pod is computed once per cycle (``prepare_cycle``); a pod
that asks for resources only is placed from verdicts memoised per pod shape and node, recomputed
only for the nodes that changed (``snapshot.py``); binding runs in its own task with the pod
assumed on its node meanwhile, so the next pod is scheduled while the Binding is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Iterable
from typing import Any

import orjson

from kubeling.api.timeutil import now_rfc3339
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_conflict, is_not_found
from kubeling.scheduler import plugins
from kubeling.scheduler.framework import OK, UNRESOLVABLE, UNSCHEDULABLE, CycleState, NodeInfo, Obj, Status
from kubeling.scheduler.plugins import (
    node_affinity,
    node_name,
    node_ports,
    node_resources_fit,
    node_unschedulable,
    taint_toleration,
)
from kubeling.scheduler.queue import FLUSH_UNSCHEDULABLE_PERIOD, SchedulingQueue
from kubeling.scheduler.snapshot import INFEASIBLE, MIXED, UNKNOWN, NodeSnapshot, Shape, ShapeVerdicts

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


# The shape path (see ``snapshot``) stands in for these plugins only: with another filter, or a
# normalised scorer that could tell plain nodes apart, every pod takes the full filter chain.
_SHAPE_FILTERS = {node_unschedulable, node_name, taint_toleration, node_affinity, node_ports, node_resources_fit}
SHAPE_PATH = set(plugins.FILTERS) <= _SHAPE_FILTERS and all(
    not hasattr(p, "normalize") or p in (taint_toleration, node_affinity) for p, _ in plugins.SCORERS)
# scores that differ between plain nodes; TaintToleration gives them all the maximum and
# NodeAffinity is skipped for a pod without preferred terms
SHAPE_SCORERS = [(p, w) for p, w in plugins.SCORERS if not hasattr(p, "normalize")]
# filters that pass on a plain node (neither cordoned nor tainted) whatever the pod
_PLAIN_PASSES = (node_unschedulable, taint_toleration)


def prepare_cycle(pod: Obj) -> tuple[CycleState, Shape | None]:
    """Per-pod data every plugin reads, computed once per cycle (requests, non-zero requests,
    host ports), and the pod's shape if it asks for resources only (no node constraints)."""
    spec = pod.get("spec") or {}
    state = CycleState()
    requests = {r: v for r, v in node_resources_fit.pod_requests(pod).items() if v > 0}
    nonzero = node_resources_fit.nonzero_requests(pod)
    ports = node_ports.host_ports(pod)
    state["requests"] = requests
    state["nonzero"] = nonzero
    state["balanced_requests"] = [requests.get(r, 0) for r in node_resources_fit.SCORED]
    state["host_ports"] = ports
    if ports or spec.get("nodeName") or spec.get("nodeSelector") or (spec.get("affinity") or {}).get("nodeAffinity"):
        return state, None
    # tolerations decide the taint and cordon filters on the nodes that have those
    tolerations = orjson.dumps(spec.get("tolerations") or [])
    return state, (tuple(sorted(requests.items())), tuple(nonzero[r] for r in node_resources_fit.SCORED), tolerations)


def choose_best(scores: list[int]) -> int:
    """The position of a highest score, uniformly at random among equal ones (upstream's selectHost).

    Without a Python-level pass over hundreds of scores: when many tie (a fresh cluster), draw
    positions until one holds the best score; when few do, find the chosen one with list.index.
    """
    best = max(scores)
    ties = scores.count(best)
    if ties * 8 >= len(scores):
        while True:
            j = random.randrange(len(scores))
            if scores[j] == best:
                return j
    j = -1
    for _ in range(random.randrange(ties) + 1):
        j = scores.index(best, j + 1)
    return j


def _filters_for(state: CycleState, pod: Obj) -> list[Any]:
    """The filter plugins that can say no to this pod (no ports asked: NodePorts cannot)."""
    spec = pod.get("spec") or {}
    return [f for f in plugins.FILTERS
            if not (f is node_ports and not state["host_ports"])
            and not (f is node_name and not spec.get("nodeName"))]


def _run_filters(filters: list[Any], state: CycleState, pod: Obj, info: NodeInfo) -> Status | None:
    """The first failing filter's Status, or None if the node passes them all."""
    for plugin in filters:
        st = plugin.filter(state, pod, info)
        if not st.ok:
            return st
    return None


def _filter(state: CycleState, pod: Obj, candidates: Iterable[NodeInfo],
            to_find: int) -> tuple[list[NodeInfo], dict[str, Status], int]:
    """The full filter chain over ``candidates`` until ``to_find`` fit: the feasible nodes, the
    failed nodes' statuses, and how many nodes were looked at."""
    filters = _filters_for(state, pod)
    plain_filters = [f for f in filters if f not in _PLAIN_PASSES]
    feasible: list[NodeInfo] = []
    statuses: dict[str, Status] = {}
    processed = 0
    for info in candidates:
        processed += 1
        st = _run_filters(plain_filters if info.plain else filters, state, pod, info)
        if st is None:
            feasible.append(info)
            if len(feasible) >= to_find:
                break
        else:
            statuses[info.name] = st
    return feasible, statuses, processed


def _pick(state: CycleState, pod: Obj, feasible: list[NodeInfo]) -> str | None:
    """The best scoring node (ties broken at random, as upstream's selectHost), None if none fit."""
    if not feasible:
        return None
    if len(feasible) == 1:
        return feasible[0].name
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


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, *, parallel_binds: int = 64) -> None:
        self.client = client
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.recorder = EventRecorder(client, SCHEDULER_NAME)
        self.node_infos: dict[str, NodeInfo] = {}
        self.snapshot = NodeSnapshot()  # stable order for sampling, memoised verdicts per pod shape
        self._snapshot_stale = True  # a node was added or removed: rebuild the order before the next cycle
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
                self._snapshot_stale = True
            return
        info = self.node_infos.get(name)
        if info is None:
            info = self.node_infos[name] = NodeInfo(node)
            self._snapshot_stale = True
            for key, n in self.pod_node.items():
                if n == name:
                    pod = self.pods.get_by_key(key)
                    if pod is not None:
                        self._account(info, key, pod, +1)
        elif info.node is not node:
            changed = _schedulability_changed(info.node, node)
            if changed:
                info.set_node(node)
                self.snapshot.touch(info)
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
                    self._count(info, key, pod, +1)
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
                self._count(info, key, pod, -1)

    def _count(self, info: NodeInfo, key: str, pod: Obj, sign: int) -> None:
        """Count a pod on (or off) a cached node; the node's memoised verdicts are then stale."""
        self._account(info, key, pod, sign)
        self.snapshot.touch(info)

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
        if self._snapshot_stale:
            self.snapshot.rebuild(self.node_infos.values())
            self._snapshot_stale = False
            self._next_start = 0
        return self.snapshot.nodes

    def find_node(self, pod: Obj) -> tuple[str | None, dict[str, Status], str | None]:
        """Filter then score: the chosen node, or None with the failed nodes' statuses and the
        reason for nodes a PreFilter left out (None if none were)."""
        state, shape = prepare_cycle(pod)
        allowed = node_affinity.pre_filter(state, pod)
        if allowed is not None:
            # a pod pinned by name (a DaemonSet's): only those nodes, all of them
            candidates = [self.node_infos[n] for n in sorted(allowed) if n in self.node_infos]
            feasible, statuses, _ = _filter(state, pod, candidates, len(candidates))
            return _pick(state, pod, feasible), statuses, node_affinity.ERR_REASON_PREFILTER
        nodes = self._nodes_in_order()
        if not nodes:
            return None, {}, None
        start = self._next_start if self._next_start < len(nodes) else 0
        to_find = num_feasible_nodes_to_find(len(nodes))
        if shape is not None and SHAPE_PATH:
            chosen, statuses, processed = self._find_by_shape(state, pod, self.snapshot.verdicts(shape), start, to_find)
        else:
            ring = itertools.chain(itertools.islice(nodes, start, None), itertools.islice(nodes, 0, start))
            feasible, statuses, processed = _filter(state, pod, ring, to_find)
            chosen = _pick(state, pod, feasible)
        self._next_start = (start + processed) % len(nodes)
        return chosen, statuses, None

    def _find_by_shape(self, state: CycleState, pod: Obj, verdicts: ShapeVerdicts, start: int,
                       to_find: int) -> tuple[str | None, dict[str, Status], int]:
        """find_node for a pod that asks for resources only (see ``snapshot``): the chosen node,
        the failed nodes' statuses, and how many nodes were looked at.

        As the node-by-node walk from ``start`` that stops at the to_find-th node that fits, but a
        stretch of nodes at a time: take as many nodes as fits are still missing, count the
        misfits among them (in C), and take that many more."""
        nodes = self.snapshot.nodes
        n = len(nodes)
        window: list[int] = []
        need = to_find
        while need > 0 and len(window) < n:
            take = min(need, n - len(window))
            part = self._stretch(verdicts, (start + len(window)) % n, take, state, pod)
            window += part
            need -= take - part.count(INFEASIBLE)
        processed = len(window)
        statuses: dict[str, Status] = {}
        j = -1
        for _ in range(window.count(INFEASIBLE)):
            j = window.index(INFEASIBLE, j + 1)
            i = (start + j) % n
            statuses[nodes[i].name] = verdicts.statuses[i]
        fits = to_find - need
        if fits == 0:
            return None, statuses, processed
        if MIXED in window:
            # a tainted or cordoned node that fits competes: score them all with every plugin
            feasible = [nodes[(start + j) % n] for j, score in enumerate(window) if score >= 0 or score == MIXED]
            return _pick(state, pod, feasible), statuses, processed
        if fits == 1:
            return nodes[(start + window.index(max(window))) % n].name, statuses, processed
        return nodes[(start + choose_best(window)) % n].name, statuses, processed

    def _stretch(self, verdicts: ShapeVerdicts, lo: int, take: int, state: CycleState, pod: Obj) -> list[int]:
        """The verdicts of ``take`` nodes from index ``lo`` (wrapping), unknown ones computed."""
        scores = verdicts.scores
        n = len(scores)
        end = lo + take
        part = scores[lo:end] if end <= n else scores[lo:] + scores[:end - n]
        if UNKNOWN in part:
            j = 0
            while True:
                try:
                    j = part.index(UNKNOWN, j)
                except ValueError:
                    break
                i = (lo + j) % n
                part[j] = scores[i] = self._verdict(verdicts, i, state, pod)
                j += 1
        return part

    def _verdict(self, verdicts: ShapeVerdicts, i: int, state: CycleState, pod: Obj) -> int:
        info = self.snapshot.nodes[i]
        if info.plain:
            st = node_resources_fit.filter(state, pod, info)
            if st.ok:
                return sum(weight * plugin.score(state, pod, info) for plugin, weight in SHAPE_SCORERS)
        else:
            filters = state.get("filters")
            if filters is None:
                filters = state["filters"] = _filters_for(state, pod)
            st = _run_filters(filters, state, pod, info) or OK
            if st.ok:
                return MIXED
        verdicts.statuses[i] = st
        return INFEASIBLE

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
        self._count(self.node_infos[node], key, pod, +1)
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
