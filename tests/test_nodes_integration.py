"""The node fleet and the node lifecycle controller against a real `kubeling up`, driven by kubectl."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

GRACE = "4"  # node monitor grace period (s) for this module's cluster; the lease renews every 1 s


@pytest.fixture(scope="module", autouse=True)
def short_grace() -> Iterator[None]:
    """Autouse, so it is set before the module's `cluster` starts (the subprocess inherits it)."""
    old = os.environ.get("KUBELING_NODE_MONITOR_GRACE_PERIOD")
    os.environ["KUBELING_NODE_MONITOR_GRACE_PERIOD"] = GRACE
    yield
    if old is None:
        os.environ.pop("KUBELING_NODE_MONITOR_GRACE_PERIOD", None)
    else:
        os.environ["KUBELING_NODE_MONITOR_GRACE_PERIOD"] = old


def node_yaml(name: str, annotations: dict[str, str] | None = None) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": name, "annotations": annotations or {}}})


def get(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def taint_keys(cluster, node: str) -> set[str]:
    return {f"{t['key']}:{t['effect']}" for t in get(cluster, "node", node)["spec"].get("taints", [])}


def ready(cluster, node: str) -> str | None:
    return conditions(get(cluster, "node", node)).get("Ready", {}).get("status")


def pod_on(name: str, node: str, image: str = "nginx:1.25", **extra: object) -> str:
    spec = {"nodeName": node, "containers": [{"name": "main", "image": image}], **extra}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_node_apply_becomes_ready_and_delete_removes_it(cluster) -> None:
    out = cluster.kubectl("apply", "-f", "-", input=node_yaml("worker-a"))
    assert "node/worker-a created" in out
    cluster.wait_for(lambda: ready(cluster, "worker-a") == "True", what="worker-a Ready")
    node = get(cluster, "node", "worker-a")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "worker-a" and labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64"
    assert node["spec"]["podCIDR"].startswith("10.244.") and node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
    st = node["status"]
    assert st["capacity"]["cpu"] == "4" and st["allocatable"]["pods"] == "110"
    assert st["nodeInfo"]["kubeletVersion"].startswith("v1.32.")
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert conditions(node)["Ready"]["reason"] == "KubeletReady"
    # the node's Lease, renewed by the fleet and owned by the Node
    lease = get(cluster, "lease", "worker-a", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "worker-a"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = lease["spec"]["renewTime"]
    cluster.wait_for(lambda: get(cluster, "lease", "worker-a", "-n", "kube-node-lease")["spec"]["renewTime"] != first,
                     what="the lease renewed")
    out = cluster.kubectl("get", "nodes")
    assert "worker-a   Ready" in out
    cluster.kubectl("delete", "node", "worker-a")
    cluster.wait_for(lambda: "worker-a" not in cluster.kubectl("get", "nodes", "-o", "name"), what="node gone")


def test_external_node_is_not_adopted(cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=node_yaml("outside", {"kubeling.io/node-agent": "external"}))
    cluster.kubectl("apply", "-f", "-", input=node_yaml("inside"))
    cluster.wait_for(lambda: ready(cluster, "inside") == "True", what="inside Ready")
    assert "Ready" not in conditions(get(cluster, "node", "outside"))
    cluster.kubectl("delete", "node", "outside")


def test_pods_run_fail_and_crash(cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=node_yaml("worker-p"))
    cluster.wait_for(lambda: ready(cluster, "worker-p") == "True", what="worker-p Ready")
    cidr = get(cluster, "node", "worker-p")["spec"]["podCIDR"]
    cluster.kubectl("create", "-f", "-", input=pod_on("web", "worker-p"))
    cluster.kubectl("create", "-f", "-", input=pod_on("pull", "worker-p", "nginx:broken"))
    cluster.kubectl("create", "-f", "-", input=pod_on("crashy", "worker-p", "busybox:crash"))
    cluster.wait_for(lambda: get(cluster, "pod", "web")["status"].get("phase") == "Running", what="web Running")
    web = get(cluster, "pod", "web")
    st = web["status"]
    assert st["podIP"].rsplit(".", 1)[0] == cidr.rsplit(".", 1)[0]
    assert st["hostIP"] == st["hostIPs"][0]["ip"]
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and "running" in cs["state"]
    assert cs["imageID"].startswith("docker.io/library/nginx@sha256:")
    assert {c: v["status"] for c, v in conditions(web).items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    cluster.wait_for(lambda: "ImagePullBackOff" in cluster.kubectl("get", "pod", "pull"), what="ImagePullBackOff")
    cluster.wait_for(lambda: get(cluster, "pod", "crashy")["status"]["containerStatuses"][0]["restartCount"] >= 1,
                     what="crash loop restarts", timeout=90)
    assert "CrashLoopBackOff" in cluster.kubectl("get", "pod", "crashy")
    # deletion: the container stops ~1 s later and the fleet removes the pod; kubectl's wait returns
    out = cluster.kubectl("delete", "pod", "web", "pull", "crashy")
    assert 'pod "web" deleted' in out
    assert "web" not in cluster.kubectl("get", "pods", "-o", "name")


def test_network_unavailable_and_cordon_taints(cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=node_yaml("worker-n"))
    cluster.wait_for(lambda: ready(cluster, "worker-n") == "True", what="worker-n Ready")
    cluster.wait_for(lambda: not taint_keys(cluster, "worker-n"), what="no taints on a Ready node")
    cluster.kubectl("patch", "node", "worker-n", "--subresource=status", "-p", json.dumps(
        {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
                                    "message": "network plugin is not ready"}]}}))
    cluster.wait_for(lambda: taint_keys(cluster, "worker-n") == {"node.kubernetes.io/network-unavailable:NoSchedule"},
                     what="network-unavailable taint")
    # the fleet's later status posts keep the condition it does not own
    cluster.kubectl("annotate", "node", "worker-n", "kubeling.io/capacity-cpu=8")
    cluster.wait_for(lambda: get(cluster, "node", "worker-n")["status"]["capacity"]["cpu"] == "8", what="capacity 8")
    assert conditions(get(cluster, "node", "worker-n"))["NetworkUnavailable"]["status"] == "True"
    cluster.kubectl("patch", "node", "worker-n", "--subresource=status", "-p", json.dumps(
        {"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
                                    "message": "network plugin is ready"}]}}))
    cluster.wait_for(lambda: not taint_keys(cluster, "worker-n"), what="network-unavailable taint removed")
    cluster.kubectl("cordon", "worker-n")
    cluster.wait_for(lambda: taint_keys(cluster, "worker-n") == {"node.kubernetes.io/unschedulable:NoSchedule"},
                     what="unschedulable taint")
    cluster.kubectl("uncordon", "worker-n")
    cluster.wait_for(lambda: not taint_keys(cluster, "worker-n"), what="unschedulable taint removed")
    cluster.kubectl("annotate", "node", "worker-n", "kubeling.io/simulate=memory-pressure")
    cluster.wait_for(lambda: taint_keys(cluster, "worker-n") == {"node.kubernetes.io/memory-pressure:NoSchedule"},
                     what="memory-pressure taint")
    cluster.kubectl("annotate", "node", "worker-n", "kubeling.io/simulate-")
    cluster.wait_for(lambda: not taint_keys(cluster, "worker-n"), what="memory-pressure healed")


def test_unreachable_node_goes_unknown_and_evicts(cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=node_yaml("worker-u"))
    cluster.wait_for(lambda: ready(cluster, "worker-u") == "True", what="worker-u Ready")
    short = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
              "tolerationSeconds": 1}]
    forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    cluster.kubectl("create", "-f", "-", input=pod_on("leaves", "worker-u", tolerations=short))
    cluster.kubectl("create", "-f", "-", input=pod_on("stays", "worker-u", tolerations=forever))
    for name in ("leaves", "stays"):
        cluster.wait_for(lambda n=name: conditions(get(cluster, "pod", n)).get("Ready", {}).get("status") == "True",
                         what=f"{name} Ready")
    cluster.kubectl("annotate", "node", "worker-u", "kubeling.io/simulate=unreachable")
    cluster.wait_for(lambda: ready(cluster, "worker-u") == "Unknown", what="worker-u Unknown")
    assert conditions(get(cluster, "node", "worker-u"))["Ready"]["message"] == "Kubelet stopped posting node status."
    assert "NotReady" in cluster.kubectl("get", "node", "worker-u")
    cluster.wait_for(lambda: {"node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"}
                     <= taint_keys(cluster, "worker-u"), what="unreachable taints")
    cluster.wait_for(lambda: conditions(get(cluster, "pod", "stays"))["Ready"]["status"] == "False",
                     what="pods on the node marked not Ready")
    cluster.wait_for(lambda: get(cluster, "pod", "leaves")["metadata"].get("deletionTimestamp"),
                     what="the pod tolerating 1 s evicted")
    assert conditions(get(cluster, "pod", "leaves"))["DisruptionTarget"]["reason"] == "DeletionByTaintManager"
    assert not get(cluster, "pod", "stays")["metadata"].get("deletionTimestamp")
    # healing: Ready again, taints gone, the evicted pod finishes terminating, the other is Ready
    cluster.kubectl("annotate", "node", "worker-u", "kubeling.io/simulate-")
    cluster.wait_for(lambda: ready(cluster, "worker-u") == "True", what="worker-u Ready again")
    cluster.wait_for(lambda: not taint_keys(cluster, "worker-u"), what="unreachable taints removed")
    cluster.wait_for(lambda: "leaves" not in cluster.kubectl("get", "pods", "-o", "name"), what="evicted pod gone")
    cluster.wait_for(lambda: conditions(get(cluster, "pod", "stays"))["Ready"]["status"] == "True",
                     what="pod Ready again")
