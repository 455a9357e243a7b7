"""Node lifecycle: node health from Leases, taints from node conditions, NoExecute taint eviction.

Three upstream controllers in one module, as kube-controller-manager runs them side by side:

* node health (pkg/controller/nodelifecycle ``monitorNodeHealth``): a node whose Lease and Ready
  heartbeat have not moved for the grace period (40 s; ``KUBELING_NODE_MONITOR_GRACE_PERIOD`` or
  ``grace_period=`` for tests) gets Ready/MemoryPressure/DiskPressure/PIDPressure=Unknown
  ("NodeStatusUnknown", "Kubelet stopped posting node status.") and its pods Ready=False (while it stays Unknown). Times
  are this controller's own observations, never the kubelet's clock.
* TaintNodesByCondition and the NoExecute tainting pass: conditions and spec.unschedulable become
  node.kubernetes.io/* taints, removed when the cause goes (see :func:`desired_taints`).
* taint-eviction-controller: pods that do not tolerate a NoExecute taint of their node are deleted,
  after the smallest matching tolerationSeconds (see :func:`eviction_delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from kubeling.client.controller import run_controller
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory, copy, object_key, split_key
from kubeling.client.rest import ApiError, Client
from kubeling.client.workqueue import WorkQueue
from kubeling.nodes.stages import fmt_time, parse_time

log = logging.getLogger(__name__)

GRACE_ENV = "KUBELING_NODE_MONITOR_GRACE_PERIOD"
DEFAULT_GRACE_PERIOD = 40.0
STARTUP_GRACE_PERIOD = 60.0
DEFAULT_MONITOR_PERIOD = 5.0

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# condition type -> (status that taints, taint key); upstream's nodeConditionToTaintKeyStatusMap
CONDITION_TAINTS = {
    "MemoryPressure": ("True", "node.kubernetes.io/memory-pressure"),
    "DiskPressure": ("True", "node.kubernetes.io/disk-pressure"),
    "PIDPressure": ("True", "node.kubernetes.io/pid-pressure"),
    "NetworkUnavailable": ("True", "node.kubernetes.io/network-unavailable"),
}
MANAGED = ({(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute"), (UNREACHABLE, "NoSchedule"),
            (UNREACHABLE, "NoExecute"), (UNSCHEDULABLE, "NoSchedule")}
           | {(key, "NoSchedule") for _, key in CONDITION_TAINTS.values()})
HEALTH_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")

Obj = dict[str, Any]


def default_grace_period() -> float:
    try:
        return max(float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_PERIOD)), 0.5)
    except ValueError:
        return DEFAULT_GRACE_PERIOD


# -- pure rules -------------------------------------------------------------------------------------

def _conditions(node: Obj) -> dict[str, Obj]:
    return {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}


def desired_taints(node: Obj, *, now: float) -> list[Obj]:
    """Node taints with the managed ones recomputed from conditions; others kept as they are."""
    conds = _conditions(node)
    want: set[tuple[str, str]] = set()
    ready = (conds.get("Ready") or {}).get("status")
    if ready == "False":
        want |= {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}
    elif ready == "Unknown":
        want |= {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    elif ready is None:  # a node that never reported: upstream admission taints it not-ready
        want.add((NOT_READY, "NoSchedule"))
    for ctype, (status, key) in CONDITION_TAINTS.items():
        if (conds.get(ctype) or {}).get("status") == status:
            want.add((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        want.add((UNSCHEDULABLE, "NoSchedule"))
    out: list[Obj] = []
    have: set[tuple[str, str]] = set()
    for t in (node.get("spec") or {}).get("taints") or []:
        pair = (t.get("key", ""), t.get("effect", ""))
        if pair in MANAGED and pair not in want:
            continue
        have.add(pair)
        out.append(t)
    for key, effect in sorted(want - have):
        taint: Obj = {"key": key, "effect": effect}
        if effect == "NoExecute":
            taint["timeAdded"] = fmt_time(now)
        out.append(taint)
    return out


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Upstream's ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key != taint.get("key", ""):
        return not key and operator == "Exists"
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_delay(pod: Obj, taints: list[Obj]) -> float | None:
    """Seconds a pod may stay on a node with these taints: None forever, 0 evict now."""
    no_execute = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_execute:
        return None
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    delay: float | None = None
    for taint in no_execute:
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return 0.0
        for t in used:
            secs = t.get("tolerationSeconds")
            if secs is not None:
                secs = max(float(secs), 0.0)
                delay = secs if delay is None else min(delay, secs)
    return delay


def unknown_conditions(node: Obj, *, now: float) -> list[Obj]:
    """The condition updates that mark a silent node: Unknown for every kubelet-owned condition."""
    conds = _conditions(node)
    ts = fmt_time(now)
    out = []
    for ctype in HEALTH_CONDITIONS:
        c = conds.get(ctype)
        if c is None:
            created = (node.get("metadata") or {}).get("creationTimestamp") or ts
            out.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastHeartbeatTime": created,
                        "lastTransitionTime": ts})
        elif c.get("status") != "Unknown":
            out.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastHeartbeatTime": c.get("lastHeartbeatTime"), "lastTransitionTime": ts})
    return out


NODE_LEASE_NAMESPACE = "kube-node-lease"  # where kubelets (and the fleet) keep their node Leases

# -- the controller -----------------------------------------------------------------------------------

class NodeLifecycleController:
    """See the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory, *, grace_period: float | None = None,
                 monitor_period: float | None = None, startup_grace_period: float = STARTUP_GRACE_PERIOD,
                 workers: int = 4, clock: Any = time.time) -> None:
        self.client = client
        self.factory = factory
        self.grace_period = grace_period or default_grace_period()
        self.monitor_period = monitor_period or min(DEFAULT_MONITOR_PERIOD, max(self.grace_period / 4, 0.2))
        self.startup_grace_period = max(startup_grace_period, self.grace_period)
        self.workers = workers
        self.clock = clock
        self.nodes = factory.informer("nodes")
        self.pods = factory.informer("pods")
        # all namespaces, filtered below: the garbage collector's Lease informer is the same one, so
        # each Lease renewal (500 a second at 5,000 nodes) is watched and decoded once, not twice
        self.leases = factory.informer("leases.coordination.k8s.io")
        self.node_queue = WorkQueue("nodelifecycle")
        self.evict_queue = WorkQueue("taint-eviction")
        self.recorder = EventRecorder(client, "node-controller")
        self.eviction_recorder = EventRecorder(client, "taint-eviction-controller")
        self._pods_on: dict[str, set[str]] = {}
        self._pod_node: dict[str, str] = {}
        # node -> (Ready heartbeat seen, lease renewTime seen, local time either last moved)
        self._probe: dict[str, tuple[str | None, str | None, float]] = {}
        self._unknown: set[str] = set()  # nodes whose Ready condition is Unknown
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)
        self.leases.add_handler(self._on_lease)

    # -- events ---------------------------------------------------------------------------------

    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            self._probe.pop(name, None)
            self._unknown.discard(name)
            return
        ready = _conditions(node).get("Ready")
        if ready is not None and ready.get("status") == "Unknown":
            self._unknown.add(name)
        else:
            self._unknown.discard(name)
        self._observe(name, heartbeat=_ready_heartbeat(node))
        self.node_queue.add(name)
        if old is None or _taints(old) != _taints(node):
            for key in self._pods_on.get(name, ()):
                self.evict_queue.add(key)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        key = object_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        prev = self._pod_node.get(key)
        if prev is not None and (etype == "DELETED" or prev != node):
            self._pod_node.pop(key, None)
            keys = self._pods_on.get(prev)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._pods_on[prev]
        if etype == "DELETED" or not node:
            return
        self._pod_node[key] = node
        self._pods_on.setdefault(node, set()).add(key)
        if old is None or prev != node or (old.get("spec") or {}).get("tolerations") != pod["spec"].get("tolerations"):
            self.evict_queue.add(key)

    def _on_lease(self, etype: str, lease: Obj, old: Obj | None) -> None:
        if etype != "DELETED" and lease["metadata"].get("namespace") == NODE_LEASE_NAMESPACE:
            self._observe(lease["metadata"]["name"], renew=(lease.get("spec") or {}).get("renewTime"))

    def _observe(self, name: str, *, heartbeat: str | None = None, renew: str | None = None) -> None:
        hb, rn, at = self._probe.get(name, (None, None, 0.0))
        moved = (heartbeat is not None and heartbeat != hb) or (renew is not None and renew != rn)
        self._probe[name] = (heartbeat if heartbeat is not None else hb, renew if renew is not None else rn,
                             self.clock() if moved or not at else at)

    # -- loops ----------------------------------------------------------------------------------

    async def run(self) -> None:
        self.factory.start()
        await asyncio.gather(self.nodes.wait_synced(), self.pods.wait_synced(), self.leases.wait_synced())
        now = self.clock()
        for name in list(self._probe):  # grace starts now, whatever the cached times say
            hb, rn, _ = self._probe[name]
            self._probe[name] = (hb, rn, now)
        try:
            await asyncio.gather(
                run_controller(self.node_queue.name, self.node_queue, self._sync_taints, workers=self.workers),
                run_controller(self.evict_queue.name, self.evict_queue, self._sync_eviction, workers=self.workers),
                self._monitor_loop())
        finally:
            self.node_queue.shutdown()
            self.evict_queue.shutdown()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_period)
            try:
                await self.monitor_node_health()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node health monitor pass failed")

    async def monitor_node_health(self) -> None:
        """One pass: silent nodes go Unknown; pods on nodes not Ready are marked not Ready."""
        now = self.clock()
        # Only nodes silent for longer than the (shorter) grace period or already Unknown need a
        # look: at thousands of healthy nodes a pass is then one comparison per node.
        silent = {name for name, (_, _, seen) in self._probe.items() if now - seen > self.grace_period}
        for name in sorted(silent | self._unknown):
            node = self.nodes.get(name)
            if node is None:
                continue
            _, _, seen = self._probe.get(name, (None, None, now))
            conds = _conditions(node)
            ready = conds.get("Ready")
            grace = self.grace_period if ready is not None else self.startup_grace_period
            if now - seen > grace:
                updates = unknown_conditions(node, now=now)
                if updates:
                    try:
                        await self.client.patch("nodes", name, {"status": {"conditions": updates}},
                                                subresource="status", patch_type="strategic")
                    except ApiError as e:
                        log.info("marking node %s Unknown: %s", name, e)
                        continue
                    if ready is None or ready.get("status") == "True":
                        self.recorder.event(node, "Normal", "NodeNotReady",
                                            f"Node {name} status is now: NodeNotReady")
                    await self._mark_pods_not_ready(name, now)
                    continue
            # Unknown only: a kubelet that still runs (Ready=False) owns its pods' readiness
            if ready is not None and ready.get("status") == "Unknown":
                await self._mark_pods_not_ready(name, now)

    async def _mark_pods_not_ready(self, node_name: str, now: float) -> None:
        for key in list(self._pods_on.get(node_name, ())):
            pod = self.pods.get_by_key(key)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            ready = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                         None)
            if ready is None or ready.get("status") != "True":
                continue
            ns, name = split_key(key)
            try:
                await self.client.patch("pods", name, {"status": {"conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": fmt_time(now)}]}}, ns,
                    subresource="status", patch_type="strategic")
            except ApiError as e:
                log.info("marking pod %s not ready: %s", key, e)
                continue
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    # -- taints ---------------------------------------------------------------------------------

    async def _sync_taints(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        want = desired_taints(node, now=self.clock())
        if want == (_taints(node) or []):
            return
        body = copy(node)
        body.setdefault("spec", {})["taints"] = want
        if not want:
            del body["spec"]["taints"]
        await self.client.update("nodes", body)

    # -- eviction -------------------------------------------------------------------------------

    async def _sync_eviction(self, key: str) -> None:
        pod = self.pods.get_by_key(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        node = self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        taints = _taints(node) or []
        delay = eviction_delay(pod, taints)
        if delay is None:
            return
        now = self.clock()
        if delay > 0:
            added = [parse_time(t.get("timeAdded")) for t in taints if t.get("effect") == "NoExecute"]
            start = max((a for a in added if a is not None), default=now)
            if start + delay > now:
                self.evict_queue.add_after(key, start + delay - now + 0.05)
                return
        ns, name = split_key(key)
        uid = pod["metadata"].get("uid")
        with contextlib.suppress(ApiError):  # the condition is informative; the delete is what counts
            await self.client.patch("pods", name, {"status": {"conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                 "message": "Taint manager: deleting due to NoExecute taint",
                 "lastTransitionTime": fmt_time(now)}]}}, ns, subresource="status", patch_type="strategic")
        self.eviction_recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        try:
            await self.client.delete("pods", name, ns, preconditions={"uid": uid} if uid else None)
        except ApiError as e:
            if e.code not in (404, 409):
                raise


def _taints(node: Obj) -> list[Obj] | None:
    return (node.get("spec") or {}).get("taints")


def _ready_heartbeat(node: Obj) -> str | None:
    return (_conditions(node).get("Ready") or {}).get("lastHeartbeatTime")
