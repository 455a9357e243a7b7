"""The DaemonSet controller against a real `kubeling up`, driven by the real kubectl."""

from __future__ import annotations

import json

import pytest

NODES = """
apiVersion: v1
kind: Node
metadata:
  name: master
  labels: {kubernetes.io/hostname: master, node-role.kubernetes.io/master: ""}
spec:
  taints: [{key: node-role.kubernetes.io/master, effect: NoSchedule}]
---
apiVersion: v1
kind: Node
metadata:
  name: w1
  labels: {kubernetes.io/hostname: w1, disk: ssd}
---
apiVersion: v1
kind: Node
metadata:
  name: w2
  labels: {kubernetes.io/hostname: w2}
"""


def ds_manifest(name: str, *, image: str = "busybox:1", tolerate_master: bool = True, node_selector=None,
                strategy=None, history_limit: int | None = None) -> str:
    spec: dict = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": image}]}},
    }
    if tolerate_master:
        spec["template"]["spec"]["tolerations"] = [{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}]
    if node_selector:
        spec["template"]["spec"]["nodeSelector"] = node_selector
    if strategy:
        spec["updateStrategy"] = strategy
    if history_limit is not None:
        spec["revisionHistoryLimit"] = history_limit
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet",
                       "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def pods(cluster, app: str) -> list[dict]:
    return json.loads(cluster.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]


def live(items: list[dict]) -> list[dict]:
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def target(pod: dict) -> str:
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]


def pod_nodes(cluster, app: str) -> list[str]:
    return sorted(target(p) for p in live(pods(cluster, app)))


def ds_status(cluster, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "ds", name, "-o", "json")).get("status") or {}


@pytest.fixture(scope="module")
def kc(cluster):
    cluster.kubectl("apply", "-f", "-", input=NODES)
    return cluster


def test_one_pod_per_eligible_node_with_injected_fields(kc):
    kc.kubectl("create", "-f", "-", input=ds_manifest("agent"))
    kc.wait_for(lambda: pod_nodes(kc, "agent") == ["master", "w1", "w2"], what="a pod on each node")
    p = live(pods(kc, "agent"))[0]
    assert p["metadata"]["generateName"] == "agent-"
    labels = p["metadata"]["labels"]
    assert labels["pod-template-generation"] == "1" and labels["controller-revision-hash"]
    ref = p["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agent", True)
    tols = {(t.get("key"), t.get("effect")) for t in p["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node-role.kubernetes.io/master", "NoSchedule")} <= tols
    kc.wait_for(lambda: ds_status(kc, "agent").get("desiredNumberScheduled") == 3, what="desired 3")
    events = kc.kubectl("get", "events", "--field-selector", "involvedObject.name=agent", "-o", "json")
    messages = [e["message"] for e in json.loads(events)["items"]]
    assert any(m.startswith("Created pod: agent-") for m in messages)


def test_master_taint_respected_and_node_selector(kc):
    kc.kubectl("create", "-f", "-", input=ds_manifest("plain", tolerate_master=False))
    kc.wait_for(lambda: pod_nodes(kc, "plain") == ["w1", "w2"], what="pods on workers only")
    kc.kubectl("create", "-f", "-", input=ds_manifest("ssd", node_selector={"disk": "ssd"}))
    kc.wait_for(lambda: pod_nodes(kc, "ssd") == ["w1"], what="pod on the ssd node only")
    kc.kubectl("label", "node", "w1", "disk=hdd", "--overwrite")
    kc.wait_for(lambda: pod_nodes(kc, "ssd") == [], what="relabelled node loses its pod")
    kc.kubectl("label", "node", "w2", "disk=ssd", "--overwrite")
    kc.wait_for(lambda: pod_nodes(kc, "ssd") == ["w2"], what="newly matching node gains a pod")


def test_noexecute_taint_evicts_and_node_join_leave(kc):
    kc.kubectl("create", "-f", "-", input=ds_manifest("evict"))
    kc.wait_for(lambda: pod_nodes(kc, "evict") == ["master", "w1", "w2"], what="pods everywhere")
    kc.kubectl("taint", "node", "w2", "dedicated=x:NoExecute")
    kc.wait_for(lambda: pod_nodes(kc, "evict") == ["master", "w1"], what="NoExecute taint evicts")
    kc.kubectl("taint", "node", "w2", "dedicated=x:NoExecute-")
    kc.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "w3", "labels": {"kubernetes.io/hostname": "w3"}}}))
    kc.wait_for(lambda: pod_nodes(kc, "evict") == ["master", "w1", "w2", "w3"], what="joined node gets a pod")
    kc.kubectl("delete", "node", "w3", "--wait=false")
    kc.wait_for(lambda: pod_nodes(kc, "evict") == ["master", "w1", "w2"], what="left node's pod removed")


def test_orphan_is_adopted(kc):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "busybox:1"}],
                       "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                           "nodeSelectorTerms": [{"matchFields": [
                               {"key": "metadata.name", "operator": "In", "values": ["w1"]}]}]}}}}}
    kc.kubectl("create", "-f", "-", input=json.dumps(orphan))
    # the orphan must exist for the controller before the DaemonSet does (as on a real cluster, a pod
    # the controller's informer has not seen yet cannot be adopted, and a same-second tie is broken
    # by name, which would keep the controller's own pod)
    kc.wait_for(lambda: kc.kubectl("get", "pod", "orphan", "-o", "jsonpath={.spec.nodeName}") == "w1",
                what="orphan scheduled on w1")
    # OnDelete: the adopted orphan lacks the template hash, so a RollingUpdate would (as upstream)
    # replace it right after adopting it; here it must stay
    kc.kubectl("create", "-f", "-", input=ds_manifest("adopt", tolerate_master=False,
                                                       strategy={"type": "OnDelete"}))

    def adopted():
        p = json.loads(kc.kubectl("get", "pod", "orphan", "-o", "json"))
        refs = p["metadata"].get("ownerReferences") or []
        return refs and refs[0]["kind"] == "DaemonSet" and refs[0]["name"] == "adopt"
    kc.wait_for(adopted, what="orphan adopted")
    kc.wait_for(lambda: pod_nodes(kc, "adopt") == ["w1", "w2"], what="no second pod on w1")


def revisions(kc, app: str) -> list[tuple[int, str]]:
    items = json.loads(kc.kubectl("get", "controllerrevision", "-l", f"app={app}", "-o", "json"))["items"]
    return sorted((r["revision"], r["metadata"]["name"]) for r in items)


def test_history_undo_and_pruning(kc):
    kc.kubectl("create", "-f", "-", input=ds_manifest("hist", history_limit=1,
                                                       strategy={"type": "OnDelete"}))
    kc.wait_for(lambda: [n for n, _ in revisions(kc, "hist")] == [1], what="revision 1")
    kc.kubectl("set", "image", "ds/hist", "c=busybox:2")
    kc.wait_for(lambda: [n for n, _ in revisions(kc, "hist")] == [1, 2], what="revision 2")
    out = kc.kubectl("rollout", "undo", "ds/hist", "--to-revision=1")
    assert "daemonset.apps/hist rolled back" in out
    kc.wait_for(lambda: [n for n, _ in revisions(kc, "hist")] == [2, 3], what="undo to 1 yields revision 3")
    out = kc.kubectl_result("rollout", "undo", "ds/hist", "--to-revision=3")
    assert "skipped rollback (current template already matches revision 3)" in (out.stdout + out.stderr)
    # OnDelete: pods keep the old template until deleted
    kc.wait_for(lambda: len(live(pods(kc, "hist"))) == 3, what="three pods")
    kc.kubectl("set", "image", "ds/hist", "c=busybox:3")
    kc.wait_for(lambda: [n for n, _ in revisions(kc, "hist")][-1] == 4, what="revision 4")
    images = {p["spec"]["containers"][0]["image"] for p in live(pods(kc, "hist"))}
    assert images == {"busybox:1"}
    victim = live(pods(kc, "hist"))[0]["metadata"]["name"]
    kc.kubectl("delete", "pod", victim, "--wait=false")
    kc.wait_for(lambda: "busybox:3" in {p["spec"]["containers"][0]["image"] for p in live(pods(kc, "hist"))},
                what="deleted pod replaced with the new template")
    # revisionHistoryLimit 1: revisions no live pod uses are pruned
    kc.wait_for(lambda: [n for n, _ in revisions(kc, "hist")] == [3, 4], what="pruned to the live revisions")


def test_rolling_update_replaces_pods(kc):
    kc.kubectl("create", "-f", "-", input=ds_manifest(
        "roll", strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}))
    kc.wait_for(lambda: len(live(pods(kc, "roll"))) == 3, what="three pods")
    kc.kubectl("set", "image", "ds/roll", "c=busybox:2")
    kc.wait_for(lambda: ds_status(kc, "roll").get("observedGeneration") == 2, what="generation observed")
    # Without running pods (a scheduler and kubelets), an update proceeds only as pods become available;
    # with them, it completes.
    status = ds_status(kc, "roll")
    assert status["desiredNumberScheduled"] == 3


@pytest.mark.parametrize("name", ["run"])
def test_pods_run_and_rollout_status(kc, name):
    """Needs the scheduler and node fleet: pods become Running and rollout status completes."""
    kc.kubectl("create", "-f", "-", input=ds_manifest(name))
    kc.wait_for(lambda: ds_status(kc, name).get("numberAvailable") == 3, timeout=90, what="3 available")
    kc.kubectl("set", "image", f"ds/{name}", "c=busybox:2")
    out = kc.kubectl("rollout", "status", f"ds/{name}", "--timeout=90s")
    assert f'daemon set "{name}" successfully rolled out' in out
    assert {p["spec"]["containers"][0]["image"] for p in live(pods(kc, name))} == {"busybox:2"}
