"""The scheduler against a real `kubeling up --nodes 2`, driven by the real kubectl."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import require_shared

MASTER_TAINT = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"


def get(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def node_of(cluster, name: str) -> str | None:
    return get(cluster, "pod", name)["spec"].get("nodeName")


def scheduled_condition(cluster, name: str) -> dict:
    conds = get(cluster, "pod", name).get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == "PodScheduled"), {})


def unschedulable_message(cluster, name: str) -> str | None:
    cond = scheduled_condition(cluster, name)
    return cond.get("message") if cond.get("reason") == "Unschedulable" else None


def events_for(cluster, name: str) -> list[dict]:
    return get(cluster, "events", "--field-selector", f"involvedObject.name={name}")["items"]


def pod_json(name: str, *, cpu: str | None = None, **spec: object) -> str:
    container: dict = {"name": "main", "image": "nginx:1.25"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [container], **spec}})


def node_json(name: str, annotations: dict | None = None, **spec: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec})


def node_ready(cluster, name: str) -> bool:
    conds = get(cluster, "node", name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds) and not any(
        t["key"] == "node.kubernetes.io/not-ready" for t in get(cluster, "node", name)["spec"].get("taints", []))


def node_count(cluster) -> int:
    return len(cluster.kubectl("get", "nodes", "-o", "name").split())


@pytest.fixture(scope="module")
def c(cluster_with_nodes):
    cluster_with_nodes.wait_for(lambda: all(node_ready(cluster_with_nodes, n) for n in ("node-1", "node-2")),
                                what="both workers Ready")
    return cluster_with_nodes


def test_pods_spread_and_never_land_on_the_control_plane(c) -> None:
    for i in range(6):
        c.kubectl("create", "-f", "-", input=pod_json(f"plain-{i}"))
    nodes = [c.wait_for(lambda i=i: node_of(c, f"plain-{i}"), what=f"plain-{i} bound") for i in range(6)]
    assert set(nodes) == {"node-1", "node-2"}  # least allocated spreads them
    ev = [e for e in events_for(c, "plain-0") if e["reason"] == "Scheduled"]
    assert ev and ev[0]["message"] == f"Successfully assigned default/plain-0 to {nodes[0]}"
    assert ev[0]["source"]["component"] == "default-scheduler"
    c.wait_for(lambda: get(c, "pod", "plain-0")["status"].get("phase") == "Running", what="plain-0 Running")
    c.kubectl("delete", "pod", *(f"plain-{i}" for i in range(6)), "--wait=false")


def test_control_plane_taint_needs_a_toleration(c) -> None:
    total = node_count(c)
    pin = {"kubernetes.io/hostname": "control-plane"}
    c.kubectl("create", "-f", "-", input=pod_json("no-toleration", nodeSelector=pin))
    msg = c.wait_for(lambda: unschedulable_message(c, "no-toleration"), what="no-toleration unschedulable")
    assert msg == (f"0/{total} nodes are available: 1 {MASTER_TAINT}, {total - 1} node(s) didn't match Pod's node "
                   f"affinity/selector. preemption: 0/{total} nodes are available: {total} Preemption is not "
                   "helpful for scheduling.")
    assert any(e["reason"] == "FailedScheduling" and e["message"] == msg for e in events_for(c, "no-toleration"))
    assert "Pending" in c.kubectl("get", "pod", "no-toleration")
    tolerate = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    c.kubectl("create", "-f", "-", input=pod_json("tolerates-master", nodeSelector=pin, tolerations=tolerate))
    assert c.wait_for(lambda: node_of(c, "tolerates-master"), what="tolerating pod bound") == "control-plane"
    assert node_of(c, "no-toleration") is None
    c.kubectl("delete", "pod", "no-toleration", "tolerates-master", "--wait=false")


def test_insufficient_cpu_stays_pending(c) -> None:
    total = node_count(c)
    c.kubectl("create", "-f", "-", input=pod_json("greedy", cpu="100"))
    msg = c.wait_for(lambda: unschedulable_message(c, "greedy"), what="greedy unschedulable")
    assert msg == (f"0/{total} nodes are available: 1 {MASTER_TAINT}, {total - 1} Insufficient cpu. preemption: "
                   f"0/{total} nodes are available: 1 Preemption is not helpful for scheduling, {total - 1} No "
                   "preemption victims found for incoming pod.")
    assert "Insufficient cpu" in c.kubectl("describe", "pod", "greedy")
    c.kubectl("delete", "pod", "greedy", "--wait=false")


def test_node_add_and_remove_and_the_seed_node_affinity_pod(c) -> None:
    shared = require_shared()
    c.kubectl("apply", "-f", str(shared / "manifests/with-node-affinity.yaml"))
    total = node_count(c)
    msg = c.wait_for(lambda: unschedulable_message(c, "with-node-affinity"), what="pinned pod waits for its node")
    assert msg.startswith(f"0/{total} nodes are available: {total} node(s) didn't satisfy plugin(s) [NodeAffinity].")
    out = c.kubectl("apply", "-f", str(shared / "manifests/node-geektime.yaml"))
    assert "node/node-geektime created" in out
    c.wait_for(lambda: node_ready(c, "node-geektime"), what="node-geektime Ready")
    # retried on the node event, without waiting for the 5 minute flush
    assert c.wait_for(lambda: node_of(c, "with-node-affinity"), what="seed pod bound") == "node-geektime"
    c.wait_for(lambda: get(c, "pod", "with-node-affinity")["status"].get("phase") == "Running", what="seed pod runs")
    assert "node-geektime" in c.kubectl("get", "pod", "with-node-affinity", "-o", "wide")
    c.kubectl("delete", "pod", "with-node-affinity")
    assert 'node "node-geektime" deleted' in c.kubectl("delete", "node", "node-geektime")
    c.wait_for(lambda: "node/node-geektime" not in c.kubectl("get", "nodes", "-o", "name"), what="node removed")


def test_network_unavailable_taint_and_tolerating_pod(c) -> None:
    c.kubectl("apply", "-f", "-", input=node_json("net-down"))
    c.wait_for(lambda: node_ready(c, "net-down"), what="net-down Ready")
    c.kubectl("patch", "node", "net-down", "--subresource=status", "-p", json.dumps(
        {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
                                    "message": "no route"}]}}))
    c.wait_for(lambda: any(t["key"] == "node.kubernetes.io/network-unavailable"
                           for t in get(c, "node", "net-down")["spec"].get("taints", [])), what="taint")
    total = node_count(c)
    pin = {"kubernetes.io/hostname": "net-down"}
    c.kubectl("create", "-f", "-", input=pod_json("needs-net", nodeSelector=pin))
    tolerate = [{"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}]
    c.kubectl("create", "-f", "-", input=pod_json("host-net", nodeSelector=pin, tolerations=tolerate))
    assert c.wait_for(lambda: node_of(c, "host-net"), what="tolerating pod bound") == "net-down"
    msg = c.wait_for(lambda: unschedulable_message(c, "needs-net"), what="needs-net unschedulable")
    # TaintToleration filters before NodeAffinity, so the control plane counts under its taint
    assert msg == (f"0/{total} nodes are available: 1 {MASTER_TAINT}, 1 node(s) had untolerated taint "
                   f"{{node.kubernetes.io/network-unavailable: }}, {total - 2} node(s) didn't match Pod's node "
                   f"affinity/selector. preemption: 0/{total} nodes are available: {total} Preemption is not "
                   "helpful for scheduling.")
    # the network comes back: the taint goes and the waiting pod is retried on that node event
    c.kubectl("patch", "node", "net-down", "--subresource=status", "-p", json.dumps(
        {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
                                    "message": "ok"}]}}))
    assert c.wait_for(lambda: node_of(c, "needs-net"), what="needs-net bound after the taint left") == "net-down"
    c.kubectl("delete", "pod", "needs-net", "host-net", "--wait=false")
    c.kubectl("delete", "node", "net-down")


def test_higher_priority_pod_binds_first(c) -> None:
    c.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}))
    c.kubectl("apply", "-f", "-", input=node_json("tiny", {"kubeling.io/capacity-cpu": "1"}))
    c.wait_for(lambda: get(c, "node", "tiny").get("status", {}).get("allocatable", {}).get("cpu") == "1",
               what="tiny registered with 1 cpu")
    c.wait_for(lambda: node_ready(c, "tiny"), what="tiny Ready")
    pin = {"kubernetes.io/hostname": "tiny"}
    # a blocker of the same high priority fills the node: neither waiting pod can preempt it
    c.kubectl("create", "-f", "-", input=pod_json("blocker", cpu="800m", nodeSelector=pin, priorityClassName="high"))
    c.wait_for(lambda: node_of(c, "blocker") == "tiny", what="blocker bound")
    c.kubectl("create", "-f", "-", input=pod_json("low", cpu="800m", nodeSelector=pin))
    c.kubectl("create", "-f", "-", input=pod_json("high", cpu="800m", nodeSelector=pin, priorityClassName="high"))
    assert get(c, "pod", "high")["spec"]["priority"] == 1000
    for name in ("low", "high"):
        c.wait_for(lambda n=name: "Insufficient cpu" in (unschedulable_message(c, n) or ""),
                   what=f"{name} waits for room on tiny")
    time.sleep(2.5)  # let both back-offs (1 s after one attempt) run out, so only priority orders them
    # the blocker's removal makes room for one: the queue hands out the higher priority first
    c.kubectl("delete", "pod", "blocker", "--grace-period=0", "--force")
    assert c.wait_for(lambda: node_of(c, "high"), what="high bound") == "tiny"
    msg = c.wait_for(lambda: "Insufficient cpu" in (unschedulable_message(c, "low") or "") and
                     unschedulable_message(c, "low"), what="low stays pending")
    assert "1 Insufficient cpu" in msg and node_of(c, "low") is None
    c.kubectl("delete", "pod", "low", "high", "--wait=false")
    c.kubectl("delete", "node", "tiny")


def test_higher_priority_pod_preempts_a_lower_one(c) -> None:
    c.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}))
    c.kubectl("apply", "-f", "-", input=node_json("small", {"kubeling.io/capacity-cpu": "1"}))
    c.wait_for(lambda: node_ready(c, "small") and get(c, "node", "small")["status"]["allocatable"]["cpu"] == "1",
               what="small Ready with 1 cpu")
    pin = {"kubernetes.io/hostname": "small"}
    c.kubectl("create", "-f", "-", input=pod_json("victim", cpu="800m", nodeSelector=pin))
    c.wait_for(lambda: node_of(c, "victim") == "small", what="victim bound")
    c.kubectl("create", "-f", "-", input=pod_json("preemptor", cpu="800m", nodeSelector=pin,
                                                  priorityClassName="high"))
    assert c.wait_for(lambda: node_of(c, "preemptor"), what="preemptor bound", timeout=90) == "small"
    assert "victim" not in c.kubectl("get", "pods", "-o", "name")
    c.kubectl("delete", "pod", "preemptor", "--wait=false")
    c.kubectl("delete", "node", "small")
