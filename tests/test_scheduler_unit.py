"""The scheduler's plugins, queue, FitError messages and node choice, without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubeling.controllers.podgc import terminated_to_delete
from kubeling.scheduler import scheduler as sched
from kubeling.scheduler.framework import UNRESOLVABLE, CycleState, NodeInfo, Status
from kubeling.scheduler.plugins import (
    node_affinity,
    node_ports,
    node_resources_balanced_allocation,
    node_resources_fit,
    node_unschedulable,
    taint_toleration,
)
from kubeling.scheduler.queue import SchedulingQueue


def node(name: str, *, cpu: str = "4", memory: str = "16Gi", pods: str = "110", labels: dict | None = None,
         taints: list | None = None, unschedulable: bool = False) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name: str = "p", *, cpu: str | None = None, memory: str | None = None, priority: int = 0,
        **spec: Any) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container = {"name": "c", "image": "nginx", "resources": {"requests": requests} if requests else {}}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [container], "priority": priority, **spec}, "status": {}}


def affinity(*exprs: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}}


# ---- messages --------------------------------------------------------------------------------------

def test_fit_error_message_matches_upstream() -> None:
    statuses = {
        "master": Status(UNRESOLVABLE, ["node(s) had untolerated taint {node-role.kubernetes.io/master: }"]),
        **{f"n{i}": Status(UNRESOLVABLE, ["node(s) didn't match Pod's node affinity/selector"]) for i in range(3)},
    }
    msg = sched.fit_error_message(4, statuses, post_filter=sched.preemption_message(4, {}))
    assert msg == ("0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/master: }, "
                   "3 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: "
                   "4 Preemption is not helpful for scheduling.")


def test_fit_error_message_counts_absent_nodes_and_sorts_like_go() -> None:
    statuses = {"a": Status("Unschedulable", ["Insufficient cpu"])}
    msg = sched.fit_error_message(4, statuses, absent_reason="node(s) didn't satisfy plugin(s) [NodeAffinity]",
                                  post_filter=sched.preemption_message(
                                      4, {"a": Status(UNRESOLVABLE, [sched.NO_VICTIMS])}))
    assert msg == ("0/4 nodes are available: 1 Insufficient cpu, 3 node(s) didn't satisfy plugin(s) [NodeAffinity]. "
                   "preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, "
                   "3 Preemption is not helpful for scheduling.")
    # one node with two reasons counts both; "<count> <reason>" strings sort as strings
    two = {"a": Status(reasons=["Insufficient cpu", "Insufficient memory"]),
           **{f"b{i}": Status(reasons=["Too many pods"]) for i in range(10)}}
    assert sched.fit_error_message(11, two) == (
        "0/11 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 10 Too many pods.")
    assert sched.fit_error_message(0, {}) == "0/0 nodes are available:"


def test_num_feasible_nodes_to_find() -> None:
    assert sched.num_feasible_nodes_to_find(3) == 3
    assert sched.num_feasible_nodes_to_find(99) == 99
    assert sched.num_feasible_nodes_to_find(100) == 100
    assert sched.num_feasible_nodes_to_find(1000) == 420
    assert sched.num_feasible_nodes_to_find(5000) == 500
    assert sched.num_feasible_nodes_to_find(20000) == 1000


# ---- plugins ---------------------------------------------------------------------------------------

def test_taint_toleration_filter_and_score() -> None:
    tainted = NodeInfo(node("m", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]))
    st = taint_toleration.filter(CycleState(), pod(), tainted)
    assert not st.ok and st.reasons == ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
    assert st.code == UNRESOLVABLE
    tolerating = pod(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])
    assert taint_toleration.filter(CycleState(), tolerating, tainted).ok
    assert taint_toleration.filter(CycleState(), pod(tolerations=[{"operator": "Exists"}]), tainted).ok
    valued = NodeInfo(node("v", taints=[{"key": "k", "value": "v1", "effect": "NoExecute"}]))
    assert taint_toleration.filter(CycleState(), pod(tolerations=[{"key": "k", "value": "v1"}]), valued).ok
    assert not taint_toleration.filter(CycleState(), pod(tolerations=[{"key": "k", "value": "v2"}]), valued).ok
    soft = NodeInfo(node("s", taints=[{"key": "a", "effect": "PreferNoSchedule"},
                                      {"key": "b", "effect": "PreferNoSchedule"}]))
    clean = NodeInfo(node("c"))
    assert taint_toleration.filter(CycleState(), pod(), soft).ok
    raw = [taint_toleration.score(CycleState(), pod(), i) for i in (soft, clean)]
    assert raw == [2, 0] and taint_toleration.normalize(raw) == [0, 100]
    assert taint_toleration.normalize([0, 0]) == [100, 100]


def test_node_affinity_operators_and_prefilter() -> None:
    n = NodeInfo(node("n1", labels={"cores": "8", "zone": "a"}))
    ok = [affinity({"key": "cores", "operator": "Gt", "values": ["4"]}),
          affinity({"key": "cores", "operator": "Lt", "values": ["16"]}),
          affinity({"key": "zone", "operator": "In", "values": ["a", "b"]}),
          affinity({"key": "zone", "operator": "Exists"}),
          affinity({"key": "gpu", "operator": "DoesNotExist"}),
          affinity({"key": "zone", "operator": "NotIn", "values": ["b"]})]
    bad = [affinity({"key": "cores", "operator": "Gt", "values": ["8"]}),
           affinity({"key": "cores", "operator": "Lt", "values": ["8"]}),
           affinity({"key": "cores", "operator": "Gt", "values": ["x"]}),
           affinity({"key": "gpu", "operator": "Gt", "values": ["1"]}),
           affinity({"key": "zone", "operator": "In", "values": ["b"]})]
    for a in ok:
        state = CycleState()
        node_affinity.pre_filter(state, pod(affinity=a))
        assert node_affinity.filter(state, pod(affinity=a), n).ok, a
    for a in bad:
        state = CycleState()
        node_affinity.pre_filter(state, pod(affinity=a))
        st = node_affinity.filter(state, pod(affinity=a), n)
        assert st.reasons == ["node(s) didn't match Pod's node affinity/selector"], a
    assert not node_affinity.filter(CycleState(), pod(nodeSelector={"zone": "b"}), n).ok
    assert node_affinity.filter(CycleState(), pod(nodeSelector={"zone": "a"}), n).ok
    pinned = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}}})
    assert node_affinity.pre_filter(CycleState(), pinned) == {"n7"}
    assert node_affinity.pre_filter(CycleState(), pod()) is None


def test_preferred_node_affinity_score() -> None:
    p = pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
        {"weight": 30, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}})
    infos = [NodeInfo(node("a", labels={"zone": "a"})), NodeInfo(node("b", labels={"ssd": "1"})), NodeInfo(node("c"))]
    raw = [node_affinity.score(CycleState(), p, i) for i in infos]
    assert raw == [10, 30, 0] and node_affinity.normalize(raw) == [33, 100, 0]
    assert node_affinity.pre_score(CycleState(), p) and not node_affinity.pre_score(CycleState(), pod())


def test_node_resources_fit_and_scores() -> None:
    info = NodeInfo(node("n", cpu="2", memory="4Gi", pods="2"))
    assert node_resources_fit.filter(CycleState(), pod(cpu="2"), info).ok
    st = node_resources_fit.filter(CycleState(), pod(cpu="2500m", memory="5Gi"), info)
    assert st.reasons == ["Insufficient cpu", "Insufficient memory"]
    info.requested = {"cpu": 1500}
    info.pods = {"a": {}, "b": {}}
    st = node_resources_fit.filter(CycleState(), pod(cpu="600m"), info)
    assert st.reasons == ["Too many pods", "Insufficient cpu"]
    gpu = pod()
    gpu["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": "1"}}
    assert node_resources_fit.filter(CycleState(), gpu, NodeInfo(node("x"))).reasons == ["Insufficient nvidia.com/gpu"]
    # LeastAllocated counts request-less containers as 100m / 200Mi
    empty = NodeInfo(node("e", cpu="1", memory="1000Mi"))
    assert node_resources_fit.score(CycleState(), pod(), empty) == (90 + 80) // 2
    # BalancedAllocation: equal shares score 100, lopsided ones less
    balanced = NodeInfo(node("b", cpu="4", memory="4Gi"))
    assert node_resources_balanced_allocation.score(CycleState(), pod(cpu="2", memory="2Gi"), balanced) == 100
    assert node_resources_balanced_allocation.score(CycleState(), pod(cpu="4", memory="0"), balanced) == 50


def test_node_ports_and_unschedulable() -> None:
    web = pod(containers=[{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}])
    info = NodeInfo(node("n"))
    assert node_ports.filter(CycleState(), web, info).ok
    info.used_ports.add(("0.0.0.0", "TCP", 8080))
    assert node_ports.filter(CycleState(), web, info).reasons == [node_ports.ERR_REASON]
    cordoned = NodeInfo(node("c", unschedulable=True))
    assert node_unschedulable.filter(CycleState(), pod(), cordoned).reasons == ["node(s) were unschedulable"]
    tol = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}])
    assert node_unschedulable.filter(CycleState(), tol, cordoned).ok


# ---- the queue -------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_queue_priority_order_and_backoff() -> None:
    async def main() -> None:
        clock = Clock()
        q = SchedulingQueue(clock=clock)
        q.add("ns/low", 0)
        q.add("ns/high", 1000)
        q.add("ns/mid", 10)
        q.add("ns/low2", 0)
        assert [await q.pop() for _ in range(4)] == ["ns/high", "ns/mid", "ns/low", "ns/low2"]
        # back-off doubles per attempt from 1 s up to 10 s
        durations = []
        for _ in range(6):
            q.attempts["ns/x"] = q.attempts.get("ns/x", 0) + 1
            durations.append(q.backoff_duration("ns/x"))
        assert durations == [1, 2, 4, 8, 10, 10]
        # a failed pod waits for an event; the event moves it to backoffQ, then to activeQ when due
        q.failed("ns/low")
        assert "ns/low" in q.unschedulable
        q.move_all()
        assert "ns/low" not in q.unschedulable and q.backoff_remaining("ns/low") == pytest.approx(1.0)
        q.flush_backoff()
        assert q.pending() == 1 and not q._in_active
        clock.t += 1.5
        assert await asyncio.wait_for(q.pop(), 1) == "ns/low"
        # an event during the scheduling cycle sends the failed pod to backoffQ directly
        q.move_all()
        q.failed("ns/low")
        assert "ns/low" not in q.unschedulable and "ns/low" in q._in_backoff
        q.delete("ns/low")
        assert q.pending() == 0

    asyncio.run(main())


# ---- the scheduler's choice ------------------------------------------------------------------------

class FakeInformer:
    def __init__(self) -> None:
        self.objs: dict[str, dict] = {}

    def add_handler(self, fn: Any) -> None:
        pass

    def get_by_key(self, key: str) -> dict | None:
        return self.objs.get(key)


class FakeFactory:
    def informer(self, resource: str, **_: Any) -> FakeInformer:
        return FakeInformer()


def make_scheduler(*nodes: dict) -> sched.Scheduler:
    s = sched.Scheduler(None, FakeFactory())  # type: ignore[arg-type]
    for n in nodes:
        s._on_node("ADDED", n, None)
    return s


def bind(s: sched.Scheduler, p: dict, node_name: str) -> None:
    p = {**p, "spec": {**p["spec"], "nodeName": node_name}}
    s._on_pod("ADDED", p, None)


def test_find_node_filters_and_prefers_least_allocated() -> None:
    master = node("control-plane", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    s = make_scheduler(master, node("node-1"), node("node-2"))
    bind(s, pod("busy", cpu="3"), "node-1")
    chosen, statuses, _ = s.find_node(pod("new", cpu="500m"))
    assert chosen == "node-2"
    assert list(statuses) == ["control-plane"]
    chosen, statuses, absent = s.find_node(pod("huge", cpu="100"))
    assert chosen is None and absent is None
    assert sched.fit_error_message(3, statuses) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient cpu.")
    post, nominated = s._post_filter(pod("huge", cpu="100"), statuses, 3)
    assert nominated is None
    assert post == ("preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
                    "2 No preemption victims found for incoming pod.")
    never = pod("huge", cpu="100", preemptionPolicy="Never")
    assert s._post_filter(never, statuses, 3)[0] == "preemption: not eligible due to preemptionPolicy=Never."


def test_find_node_pinned_pod_looks_at_its_node_only() -> None:
    s = make_scheduler(*(node(f"n{i}") for i in range(300)))
    pinned = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}}})
    assert s.find_node(pinned)[0] == "n7"
    gone = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["node-geektime"]}]}]}}})
    chosen, statuses, absent = s.find_node(gone)
    assert chosen is None
    assert sched.fit_error_message(300, statuses, absent_reason=absent) == (
        "0/300 nodes are available: 300 node(s) didn't satisfy plugin(s) [NodeAffinity].")


def test_sampling_rotates_through_a_big_cluster() -> None:
    s = make_scheduler(*(node(f"n{i:04}") for i in range(1000)))
    seen = set()
    for i in range(3):
        chosen, _, _ = s.find_node(pod(f"p{i}"))
        seen.add(chosen)
    # 420 feasible nodes are looked at per pod, starting where the last pod stopped
    assert s._next_start == (3 * 420) % 1000
    assert len(seen) == 3


def test_preemption_picks_lower_priority_victims() -> None:
    s = make_scheduler(node("n1", cpu="2"))
    bind(s, pod("low", cpu="2", priority=0), "n1")
    statuses = {"n1": Status("Unschedulable", ["Insufficient cpu"])}
    spawned: list[Any] = []
    s._spawn = spawned.append  # type: ignore[method-assign]
    post, nominated = s._post_filter(pod("high", cpu="1", priority=100), statuses, 1)
    assert (post, nominated) == ("", "n1") and len(spawned) == 1
    spawned[0].close()
    # an equal-priority pod is no victim
    post, nominated = s._post_filter(pod("same", cpu="1", priority=0), statuses, 1)
    assert nominated is None and "1 No preemption victims found for incoming pod" in post


# ---- pod GC ----------------------------------------------------------------------------------------

def test_terminated_pods_over_threshold_oldest_and_evicted_first() -> None:
    def p(name: str, phase: str, created: str, reason: str | None = None) -> dict:
        return {"metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
                "status": {"phase": phase, **({"reason": reason} if reason else {})}}

    pods = [p("run", "Running", "2024-01-01T00:00:00Z"), p("old", "Succeeded", "2024-01-02T00:00:00Z"),
            p("new", "Failed", "2024-01-05T00:00:00Z"), p("evicted", "Failed", "2024-01-04T00:00:00Z", "Evicted"),
            p("mid", "Succeeded", "2024-01-03T00:00:00Z")]
    assert [x["metadata"]["name"] for x in terminated_to_delete(pods, 2)] == ["evicted", "old"]
    assert terminated_to_delete(pods, 4) == [] and terminated_to_delete(pods, 0) == []
