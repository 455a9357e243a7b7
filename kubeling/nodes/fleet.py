"""The simulated kubelet fleet: one process plays the kubelet of every adopted Node, as KWOK does.

Every Node is adopted unless annotated ``kubeling.io/node-agent: external``. Per node the fleet
registers what a kubelet would (labels, status, a podCIDR as node-ipam would), renews its Lease in
kube-node-lease and posts status on upstream's cadence; per pod bound to an adopted node it walks
the pod stages of :mod:`kubeling.nodes.stages`. Thousands of nodes stay cheap: no task per node or
pod; two work queues whose delayed adds are the pods' timers, and the Leases of
:mod:`kubeling.nodes.lease` (one ticker, renewals spread evenly, each an Update of the Lease held).
Status writes are strategic merge patches (so conditions others own, like NetworkUnavailable,
survive). Unchanged node status is reported every nodeStatusReportFrequency (5 min), the first
report after a change shifted by a per-node delay as upstream's kubelet does, so nodes registered
together do not report together. With no pull or start delay a pod goes from bound to Running and
Ready in one status write, as a kubelet with its images cached effectively reports. That write
coming back through the watch is recognised (same revision, same inputs; see
:func:`kubeling.nodes.stages.echo_plan`) instead of computing the pod's status a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from kubeling.client.controller import run_controller
from kubeling.client.informer import InformerFactory, object_key, split_key
from kubeling.client.rest import ApiError, Client, is_already_exists
from kubeling.client.workqueue import WorkQueue
from kubeling.nodes import stages
from kubeling.nodes.faults import node_simulations
from kubeling.nodes.lease import LEASE_NAMESPACE, LEASES, NodeLeases

log = logging.getLogger(__name__)

GRACE_ENV = "KUBELING_NODE_MONITOR_GRACE_PERIOD"
DEFAULT_LEASE_DURATION = 40
CONTROL_PLANE = "control-plane"
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"

Obj = dict[str, Any]


def default_lease_duration() -> int:
    """leaseDurationSeconds: 40 as upstream, or the node monitor grace period tests shorten."""
    try:
        return max(int(float(os.environ.get(GRACE_ENV, DEFAULT_LEASE_DURATION))), 1)
    except ValueError:
        return DEFAULT_LEASE_DURATION


async def create_initial_nodes(client: Client, n: int, *, clock: Any = time.time) -> None:
    """``kubeling up --nodes N``: node-1..node-N and a kubeadm-style control-plane node (idempotent).

    Each node is registered as a kubelet registers itself: labels, status (capacity, conditions,
    addresses) and, as node-ipam would, a podCIDR, all in the one create. So a node is Ready from
    its first revision and the fleet has nothing to patch afterwards (at 5,000 nodes that is the
    difference between one write per node and four).
    """
    if n <= 0:
        return
    existing = await client.list_all("nodes", page_size=1000)
    have = {item["metadata"]["name"] for item in existing.get("items") or []}
    used = {idx for item in existing.get("items") or []
            if (idx := stages.index_of_pod_cidr(_spec(item).get("podCIDR"))) is not None}
    bodies = [{"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": CONTROL_PLANE, "labels": {CONTROL_PLANE_ROLE: "",
                                                              "kubernetes.io/hostname": CONTROL_PLANE}},
               "spec": {"taints": [{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}]}}]
    bodies += [{"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}}, "spec": {}}
               for i in range(1, n + 1)]
    bodies = [b for b in bodies if b["metadata"]["name"] not in have]
    idx = 0
    now = clock()
    for body in bodies:
        while idx in used:
            idx += 1
        used.add(idx)
        patch = stages.node_metadata_patch(body, cidr_index=idx) or {}
        body["metadata"]["labels"].update((patch.get("metadata") or {}).get("labels") or {})
        body["spec"].update(patch.get("spec") or {})
        body["status"] = stages.node_status(body, stages.Ctx(now=now))
    sem = asyncio.Semaphore(32)

    async def create(body: Obj) -> None:
        async with sem:
            try:
                await client.create("nodes", body)
            except ApiError as e:
                if not is_already_exists(e):
                    raise
    await asyncio.gather(*(create(b) for b in bodies))


def _rv(obj: Obj | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


class NodeFleet:
    """Simulated kubelets for every adopted Node; see the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory, *, stop_after: float = 1.0,
                 pull_delay: float = 0.0, start_delay: float = 0.0, fail_images: tuple[str, ...] = (),
                 crash_images: tuple[str, ...] = (), lease_duration: int | None = None,
                 status_report_frequency: float = 300.0, workers: int = 16,
                 clock: Any = time.time) -> None:
        self.client = client
        self.factory = factory
        self.stop_after = stop_after
        self.pull_delay = pull_delay
        self.start_delay = start_delay
        self.fail_images = tuple(fail_images)
        self.crash_images = tuple(crash_images)
        self.lease_duration = lease_duration or default_lease_duration()
        self.status_report_frequency = status_report_frequency
        self.workers = workers
        self.clock = clock
        self.nodes = factory.informer("nodes")
        self.pods = factory.informer("pods")
        self.node_queue = WorkQueue("fleet-nodes")
        self.pod_queue = WorkQueue("fleet-pods")
        self._pods_on: dict[str, set[str]] = {}          # node name -> pod keys
        self._pod_node: dict[str, str] = {}
        self._ips: dict[str, dict[str, str]] = {}         # node name -> ip -> pod key
        self._pod_ip: dict[str, tuple[str, str]] = {}     # pod key -> (node, ip)
        self._cidrs: dict[int, str] = {}                  # pod CIDR index -> node name
        self._cidr_of: dict[str, int] = {}                # node name -> pod CIDR index
        self._cidr_hint = 0
        self.leases = NodeLeases(client, duration=self.lease_duration, clock=clock, node_for=self._heartbeating)
        self._written: dict[str, tuple[str | None, Obj]] = {}  # key -> (rv we wrote over, answer)
        self._echoes: dict[str, stages.WrittenStatus] = {}  # pod key -> the status we last wrote, until it is back
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)

    # -- events -----------------------------------------------------------------------------------

    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            self._forget_node(name)
            self.node_queue.add(name)
            return
        idx = stages.index_of_pod_cidr((node.get("spec") or {}).get("podCIDR"))
        if idx is not None and idx not in self._cidrs:
            self._cidrs[idx] = name
            self._cidr_of.setdefault(name, idx)
        if not stages.is_adopted(node):
            self.leases.untrack(name)
            return
        self.leases.track(name)
        self.node_queue.add(name)
        if old is None or _annotations(old) != _annotations(node) or _spec(old).get("podCIDR") != \
                _spec(node).get("podCIDR") or not stages.is_adopted(old):
            for key in self._pods_on.get(name, ()):
                self.pod_queue.add(key)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        key = object_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if etype == "DELETED" or not node:
            self._unindex_pod(key)
            if etype == "DELETED":
                self._release_ip(key)
                self._written.pop(key, None)
                self._echoes.pop(key, None)
            return
        if self._pod_node.get(key) != node:
            self._unindex_pod(key)
            self._pod_node[key] = node
            self._pods_on.setdefault(node, set()).add(key)
        ip = (pod.get("status") or {}).get("podIP")
        if ip and not (pod.get("spec") or {}).get("hostNetwork") and key not in self._pod_ip:
            self._ips.setdefault(node, {})[ip] = key
            self._pod_ip[key] = (node, ip)
        self.pod_queue.add(key)

    def _unindex_pod(self, key: str) -> None:
        node = self._pod_node.pop(key, None)
        if node is not None:
            keys = self._pods_on.get(node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._pods_on[node]

    def _forget_node(self, name: str) -> None:
        self.leases.forget(name)
        self._written.pop(name, None)
        idx = self._cidr_of.pop(name, None)
        if idx is not None and self._cidrs.get(idx) == name:
            del self._cidrs[idx]
            self._cidr_hint = min(self._cidr_hint, idx)

    def _heartbeating(self, name: str) -> Obj | None:
        """The node, if its kubelet heartbeats now (ours, and not simulated unreachable)."""
        node = self.nodes.get(name)
        if node is None or not stages.is_adopted(node) or "unreachable" in node_simulations(node):
            return None
        return node

    # -- allocation -------------------------------------------------------------------------------

    def _alloc_cidr(self, name: str) -> int:
        if name in self._cidr_of:
            return self._cidr_of[name]
        i = self._cidr_hint
        while i in self._cidrs:
            i += 1
        self._cidrs[i] = name
        self._cidr_of[name] = i
        self._cidr_hint = i + 1
        return i

    def _pod_ip_for(self, key: str, pod: Obj, node: Obj) -> str | None:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return None
        have = self._pod_ip.get(key)
        node_name = node["metadata"]["name"]
        if have and have[0] == node_name:
            return have[1]
        prefix = stages.pod_ip_prefix(_spec(node).get("podCIDR"))
        if prefix is None:
            return None
        used = self._ips.setdefault(node_name, {})
        for host in range(2, 255):
            ip = f"{prefix}.{host}"
            if ip not in used:
                used[ip] = key
                self._pod_ip[key] = (node_name, ip)
                return ip
        return None  # the /24 is full: the pod stays without an IP, as with an exhausted IPAM

    def _release_ip(self, key: str) -> None:
        have = self._pod_ip.pop(key, None)
        if have:
            ips = self._ips.get(have[0])
            if ips is not None and ips.get(have[1]) == key:
                del ips[have[1]]

    # -- the loops --------------------------------------------------------------------------------

    async def run(self) -> None:
        self.factory.start()
        await asyncio.gather(self.nodes.wait_synced(), self.pods.wait_synced(), self.leases.load())
        try:
            await asyncio.gather(
                run_controller(self.node_queue.name, self.node_queue, self._sync_node, workers=max(self.workers // 2, 1)),
                run_controller(self.pod_queue.name, self.pod_queue, self._sync_pod, workers=self.workers),
                self.leases.run())
        finally:
            self.node_queue.shutdown()
            self.pod_queue.shutdown()

    def _fresh(self, key: str, cached: Obj | None) -> Obj | None:
        """The cached object, or our own write's answer when the cache has not caught up with it."""
        w = self._written.get(key)
        if w is None or cached is None:
            return cached
        if _rv(cached) == w[0]:
            return w[1]
        del self._written[key]
        return cached

    def _ctx(self, node: Obj, now: float) -> stages.Ctx:
        return stages.Ctx(now=now, node=node, stop_after=self.stop_after, pull_delay=self.pull_delay,
                          start_delay=self.start_delay, fail_images=self.fail_images,
                          crash_images=self.crash_images, status_report_frequency=self.status_report_frequency,
                          fast_start=True, report_jitter=True)

    # -- nodes ------------------------------------------------------------------------------------

    async def _sync_node(self, name: str) -> None:
        node = self._fresh(name, self.nodes.get(name))
        if node is None:
            with contextlib.suppress(ApiError):  # the GC would too, through the ownerReference
                await self.client.delete(LEASES, name, LEASE_NAMESPACE)
            return
        if not stages.is_adopted(node):
            return
        idx = None if _spec(node).get("podCIDR") else self._alloc_cidr(name)
        meta_patch = stages.node_metadata_patch(node, cidr_index=idx)
        if meta_patch:
            base = _rv(node)
            node = await self.client.patch("nodes", name, meta_patch)
            self._written[name] = (base, node)
        now = self.clock()
        if not self.leases.held(name) and "unreachable" not in node_simulations(node):
            await self.leases.heartbeat(node, now)  # the first Lease; renewals follow on the clock
        p = stages.plan(stages.NODE_STAGES, node, self._ctx(node, now))
        if p.effect is not None and p.effect.status:
            base = _rv(node)
            answer = await self.client.patch("nodes", name, {"status": p.effect.status}, subresource="status",
                                             patch_type="strategic")
            self._written[name] = (base, answer)
        if p.wait is not None:
            self.node_queue.add_after(name, p.wait + 0.05)

    # -- pods -------------------------------------------------------------------------------------

    async def _sync_pod(self, key: str) -> None:
        pod = self._fresh(key, self.pods.get_by_key(key))
        if pod is None:
            self._release_ip(key)
            return
        node_name = _spec(pod).get("nodeName")
        node = self.nodes.get(node_name) if node_name else None
        if node is None or not stages.is_adopted(node) or "unreachable" in node_simulations(node):
            return  # not ours, or our kubelet is down
        ctx = self._ctx(node, self.clock())
        ctx.pod_ip = self._pod_ip_for(key, pod, node)
        # our own write coming back, nothing else changed: its verdict is known without the status
        echo = self._echoes.pop(key, None)
        p = (echo is not None and stages.echo_plan(echo, pod, ctx)) or stages.plan(stages.POD_STAGES, pod, ctx)
        ns, name = split_key(key)
        wrote = False
        if p.effect is not None and p.effect.delete:
            try:
                await self.client.delete("pods", name, ns, grace_period_seconds=0,
                                         preconditions={"uid": pod["metadata"].get("uid")})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            self._release_ip(key)
            return
        if p.effect is not None and p.effect.status:
            base = _rv(pod)
            answer = await self.client.patch("pods", name, {"status": p.effect.status}, ns,
                                             subresource="status", patch_type="strategic")
            self._written[key] = (base, answer)
            wrote = True
            echo = stages.written_status(pod, ctx, answer)
            if echo is not None:
                self._echoes[key] = echo
        if p.wait is not None and not (wrote and p.wait <= 0):
            self.pod_queue.add_after(key, p.wait + 0.01)


def _annotations(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}
