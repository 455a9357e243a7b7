"""cordon / uncordon / drain with the real kubectl, taint-based eviction and pod GC against `kubeling up`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

ENV = {
    "KUBELING_NODE_MONITOR_GRACE_PERIOD": "6",
    "KUBELING_POD_GC_PERIOD": "1",
    "KUBELING_POD_GC_QUARANTINE": "2",
    "KUBELING_TERMINATED_POD_GC_THRESHOLD": "2",
}


@pytest.fixture(scope="module", autouse=True)
def short_timers() -> Iterator[None]:
    """Autouse, so it is set before the module's cluster starts (the subprocess inherits it)."""
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def get(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def names(cluster, *args: str) -> set[str]:
    return {n.split("/", 1)[1] for n in cluster.kubectl("get", "pods", *args, "-o", "name").split()}


def node_of(cluster, name: str) -> str | None:
    return get(cluster, "pod", name)["spec"].get("nodeName")


def pod_json(name: str, *, labels: dict | None = None, **spec: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                       "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}], **spec}})


def node_json(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})


def ready(cluster, node: str) -> bool:
    obj = get(cluster, "node", node)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])) \
        and not any(t["key"] == "node.kubernetes.io/not-ready" for t in obj["spec"].get("taints", []))


def running(cluster, name: str) -> bool:
    return get(cluster, "pod", name).get("status", {}).get("phase") == "Running"


@pytest.fixture(scope="module")
def c(cluster_with_nodes):
    cluster_with_nodes.wait_for(lambda: ready(cluster_with_nodes, "node-1") and ready(cluster_with_nodes, "node-2"),
                                what="workers Ready")
    return cluster_with_nodes


def test_cordon_and_uncordon(c) -> None:
    assert c.kubectl("cordon", "node-1").strip() == "node/node-1 cordoned"
    assert "Ready,SchedulingDisabled" in c.kubectl("get", "node", "node-1")
    assert get(c, "node", "node-1")["spec"]["unschedulable"] is True
    c.wait_for(lambda: any(t["key"] == "node.kubernetes.io/unschedulable"
                           for t in get(c, "node", "node-1")["spec"].get("taints", [])), what="unschedulable taint")
    for i in range(4):
        c.kubectl("create", "-f", "-", input=pod_json(f"c-{i}"))
    assert {c.wait_for(lambda i=i: node_of(c, f"c-{i}"), what="bound") for i in range(4)} == {"node-2"}
    assert c.kubectl("cordon", "node-1").strip() == "node/node-1 already cordoned"
    assert c.kubectl("uncordon", "node-1").strip() == "node/node-1 uncordoned"
    assert not get(c, "node", "node-1")["spec"].get("unschedulable")
    assert c.kubectl("uncordon", "node-1").strip() == "node/node-1 already uncordoned"
    c.kubectl("delete", "pod", *(f"c-{i}" for i in range(4)), "--wait=false")


def test_drain_ignores_daemonsets_and_evicts_the_rest(c) -> None:
    c.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}}))
    ds_pod = c.wait_for(lambda: next((p["metadata"]["name"] for p in get(c, "pods", "-l", "app=agent")["items"]
                                      if p["spec"].get("nodeName") == "node-1" and
                                      p.get("status", {}).get("phase") == "Running"), None),
                        what="the DaemonSet's pod runs on node-1")
    c.kubectl("create", "-f", "-", input=pod_json("web", nodeSelector={"kubernetes.io/hostname": "node-1"}))
    c.wait_for(lambda: running(c, "web"), what="web Running")
    # without --force an unmanaged pod blocks the drain, as upstream
    r = c.kubectl_result("drain", "node-1", "--ignore-daemonsets")
    assert r.returncode != 0 and "cannot delete Pods that declare no controller" in r.stderr
    c.kubectl("uncordon", "node-1")
    r = c.kubectl_result("drain", "node-1", "--ignore-daemonsets", "--force", "--timeout=60s")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "node/node-1 cordoned"
    assert "evicting pod default/web" in lines
    assert "pod/web evicted" in lines
    assert lines[-1] == "node/node-1 drained"
    # kubectl joins its drain warnings with "; " after one "Warning: " prefix
    assert r.stderr.startswith("Warning: ")
    assert f"ignoring DaemonSet-managed Pods: default/{ds_pod}" in r.stderr
    assert "web" not in names(c)
    assert ds_pod in names(c) and not get(c, "pod", ds_pod)["metadata"].get("deletionTimestamp")
    assert "SchedulingDisabled" in c.kubectl("get", "node", "node-1")
    c.kubectl("uncordon", "node-1")
    c.kubectl("delete", "daemonset", "agent")


def test_unreachable_node_is_tainted_and_its_pods_evicted(c) -> None:
    c.kubectl("apply", "-f", "-", input=node_json("flaky"))
    c.wait_for(lambda: ready(c, "flaky"), what="flaky Ready")
    pin = {"kubernetes.io/hostname": "flaky"}
    at_once = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 0}]
    forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    c.kubectl("create", "-f", "-", input=pod_json("evictee", nodeSelector=pin, tolerations=at_once))
    c.kubectl("create", "-f", "-", input=pod_json("survivor", nodeSelector=pin, tolerations=forever))
    for name in ("evictee", "survivor"):
        c.wait_for(lambda n=name: running(c, n), what=f"{name} Running")
    c.kubectl("annotate", "node", "flaky", "kubeling.io/simulate=unreachable")
    c.wait_for(lambda: "NotReady" in c.kubectl("get", "node", "flaky"), what="flaky NotReady")
    cond = next(x for x in get(c, "node", "flaky")["status"]["conditions"] if x["type"] == "Ready")
    assert cond["status"] == "Unknown"
    c.wait_for(lambda: {"node.kubernetes.io/unreachable"} ==
               {t["key"] for t in get(c, "node", "flaky")["spec"].get("taints", [])}, what="unreachable taints")
    c.wait_for(lambda: "evictee" not in names(c) or get(c, "pod", "evictee")["metadata"].get("deletionTimestamp"),
               what="the non-tolerating pod evicted")
    assert not get(c, "pod", "survivor")["metadata"].get("deletionTimestamp")
    # a new pod for that node does not schedule while it is unreachable
    c.kubectl("create", "-f", "-", input=pod_json("newcomer", nodeSelector=pin))
    msg = c.wait_for(lambda: next((x.get("message") for x in get(c, "pod", "newcomer").get("status", {}).get(
        "conditions", []) if x["type"] == "PodScheduled" and x["status"] == "False"), None), what="newcomer pending")
    assert "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }" in msg
    c.kubectl("delete", "pod", "newcomer", "--wait=false")


def test_pod_gc_orphans_and_terminated_threshold(c) -> None:
    # orphans: the node of "flaky" goes away; after the quarantine its pods are force-deleted
    assert "survivor" in names(c)
    c.kubectl("delete", "node", "flaky")
    c.wait_for(lambda: "survivor" not in names(c), what="orphaned pod collected")
    # terminated pods above the threshold (2 here) are deleted oldest first
    for i in range(4):
        c.kubectl("create", "-f", "-", input=pod_json(f"done-{i}", restartPolicy="Never",
                                                      containers=[{"name": "m", "image": "busybox:crash"}]))
        c.wait_for(lambda i=i: get(c, "pod", f"done-{i}").get("status", {}).get("phase") == "Failed",
                   what=f"done-{i} Failed")
    c.wait_for(lambda: {n for n in names(c) if n.startswith("done-")} == {"done-2", "done-3"},
               what="the two oldest terminated pods collected")
