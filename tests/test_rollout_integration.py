"""Progressive DaemonSet rollouts end to end: real kubectl, the kubeling CLI, the simulated fleet."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster

HASH = "controller-revision-hash"


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cl = Cluster(tmp_path_factory.mktemp("kubeling") / "data", nodes=10)
    cl.start()
    try:
        cl.wait_for(lambda: len(json.loads(cl.kubectl("get", "nodes", "-o", "json"))["items"]) == 11,
                    what="10 worker nodes")
        yield cl
    finally:
        cl.stop()


def kubeling(c: Cluster, *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "kubeling.cli.main", *args, "--kubeconfig", str(c.kubeconfig)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def ds_manifest(name: str, image: str, *, max_unavailable: int = 2, node_selector: dict[str, str] | None = None,
                cpu: str | None = None) -> str:
    container: dict[str, Any] = {"name": "agent", "image": image}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
                           "spec": {"selector": {"matchLabels": {"app": name}},
                                    "updateStrategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxUnavailable": max_unavailable}},
                                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})


def plan_manifest(name: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "rollouts.kubeling.io/v1alpha1", "kind": "RolloutPlan",
                           "metadata": {"name": name},
                           "spec": {"targetRef": {"kind": "DaemonSet", "name": name}, **spec}})


def get(c: Cluster, *args: str) -> Any:
    return json.loads(c.kubectl("get", *args, "-o", "json"))


def plan_status(c: Cluster, name: str) -> dict[str, Any]:
    return get(c, "rp", name).get("status") or {}


def ds_settled(c: Cluster, name: str) -> bool:
    ds = get(c, "ds", name)
    st = ds.get("status") or {}
    return (st.get("observedGeneration") == ds["metadata"]["generation"] and st.get("desiredNumberScheduled")
            == st.get("updatedNumberScheduled") == st.get("numberAvailable") == st.get("currentNumberScheduled"))


def pods(c: Cluster, name: str) -> list[dict[str, Any]]:
    return [p for p in get(c, "pods", "-l", f"app={name}")["items"] if not p["metadata"].get("deletionTimestamp")]


class Watcher(threading.Thread):
    """Watches a DaemonSet's pods; records, per revision hash, the nodes that ever carried it and
    the most nodes carrying it at once."""

    def __init__(self, c: Cluster, app: str) -> None:
        super().__init__(daemon=True)
        from kubernetes import client, watch

        self.api = client.CoreV1Api(c.api_client())
        self.w = watch.Watch()
        self.app = app
        self.live: dict[str, tuple[str, str]] = {}  # pod -> (node, hash)
        self.ever: dict[str, list[str]] = {}  # hash -> nodes in order of first appearance
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def run(self) -> None:
        stream = self.w.stream(self.api.list_namespaced_pod, "default", label_selector=f"app={self.app}",
                               timeout_seconds=300)
        self.ready.set()
        try:
            for ev in stream:
                self._record(ev)
        except Exception:  # noqa: BLE001  (stop() closes the stream under us)
            return

    def _record(self, ev: dict[str, Any]) -> None:
        if True:
            pod = ev["object"]
            name, h = pod.metadata.name, (pod.metadata.labels or {}).get(HASH, "")
            node = pod.spec.node_name or ""
            with self.lock:
                if ev["type"] == "DELETED" or pod.metadata.deletion_timestamp:
                    self.live.pop(name, None)
                else:
                    self.live[name] = (node, h)
                    nodes = self.ever.setdefault(h, [])
                    if node and node not in nodes:
                        nodes.append(node)
                count = len({n for n, hh in self.live.values() if hh == h and n})
                self.peak[h] = max(self.peak.get(h, 0), count)

    def reset_peak(self, h: str) -> None:
        with self.lock:
            self.peak[h] = len({n for n, hh in self.live.values() if hh == h and n})

    def stop(self) -> None:
        self.w.stop()


def test_steps_canary_pause_promote_and_held_back_pod(c: Cluster) -> None:
    name = "steps"
    c.kubectl("label", "node", "node-7", "canary=true", "--overwrite")
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1"))
    c.kubectl("apply", "-f", "-", input=plan_manifest(
        name, canaryNodes={"matchLabels": {"canary": "true"}},
        steps=[{"nodes": "20%", "pause": {}}, {"nodes": "50%", "pause": {"duration": "1s"}}, {"nodes": "100%"}]))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable v1")
    stable = plan_status(c, name)["stableRevision"]
    watcher = Watcher(c, name)
    watcher.start()
    watcher.ready.wait(10)
    c.kubectl("set", "image", f"ds/{name}", "agent=agent:v2")
    st = c.wait_for(lambda: (s := plan_status(c, name)).get("phase") == "Paused" and s.get("currentStep") == 0
                    and s.get("availableUpdatedNodes") == 2 and s, what="paused at step 1")
    new = st["updateRevision"]
    assert set(watcher.ever[new]) == {"node-7", "node-1"}  # the canary, then the first by name
    # a held-back node's pod, deleted, comes back on the stable revision
    held = next(p for p in pods(c, name) if p["metadata"]["labels"][HASH] == stable)
    node = held["spec"]["nodeName"]
    c.kubectl("delete", "pod", held["metadata"]["name"])
    back = c.wait_for(lambda: [p for p in pods(c, name) if p["spec"].get("nodeName") == node
                               and p["metadata"]["name"] != held["metadata"]["name"]], what="replacement pod")
    assert back[0]["metadata"]["labels"][HASH] == stable
    why = yaml.safe_load(kubeling(c, "why", f"ds/{name}", node, "-o", "yaml"))
    assert why[0]["reason"] in ("HeldBack", "NotReady")
    assert any(r["reason"] == "HeldBack" for r in plan_status(c, name)["why"])
    assert watcher.peak[new] <= 2
    kubeling(c, "rollout", "promote", f"ds/{name}")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="100%")
    watcher.stop()
    assert plan_status(c, name)["stableRevision"] == new
    assert {p["spec"]["containers"][0]["image"] for p in pods(c, name)} == {"agent:v2"}
    events = c.kubectl("get", "events", "--field-selector", f"involvedObject.name={name},involvedObject.kind=RolloutPlan")
    for reason in ("RolloutStarted", "StepPaused", "StepCompleted", "RolloutSucceeded"):
        assert reason in events
    out = kubeling(c, "rollout", "status", f"ds/{name}", "--no-watch")
    assert "Succeeded" in out
    assert "Succeeded" in c.kubectl("get", "rp", name)


def test_topology_spread_over_three_zones(c: Cluster) -> None:
    name = "zones"
    for i in range(1, 10):
        c.kubectl("label", "node", f"node-{i}", f"topology.kubernetes.io/zone=z{(i - 1) % 3}", "--overwrite")
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1", node_selector=None))
    c.kubectl("apply", "-f", "-", input=plan_manifest(name, topologyKey="topology.kubernetes.io/zone",
                                                      steps=[{"nodes": "30%", "pause": {}}, {"nodes": "100%"}]))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable")
    c.kubectl("set", "image", f"ds/{name}", "agent=agent:v2")
    st = c.wait_for(lambda: (s := plan_status(c, name)).get("phase") == "Paused" and s, what="paused")
    nodes = {p["spec"]["nodeName"] for p in pods(c, name) if p["metadata"]["labels"][HASH] == st["updateRevision"]}
    zones = {get(c, "node", n)["metadata"]["labels"].get("topology.kubernetes.io/zone") for n in nodes}
    assert len(nodes) == 3 and len(zones) == 3
    kubeling(c, "rollout", "promote", f"ds/{name}", "--full")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="100%")


def test_broken_image_rolls_back(c: Cluster) -> None:
    name = "broken"
    # two at a time, so two failures (more than maxFailedNodes) show before the DaemonSet stalls itself
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1", max_unavailable=2))
    c.kubectl("apply", "-f", "-", input=plan_manifest(name, steps=[{"nodes": "50%"}, {"nodes": "100%"}],
                                                      failurePolicy={"maxFailedNodes": 1, "action": "Rollback"}))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable")
    watcher = Watcher(c, name)
    watcher.start()
    watcher.ready.wait(10)
    c.kubectl("set", "image", f"ds/{name}", "agent=agent:broken")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "RolledBack", what="rolled back")
    c.wait_for(lambda: ds_settled(c, name), what="every node back on the stable revision")
    st = plan_status(c, name)
    watcher.stop()
    assert len(watcher.ever.get(st["updateRevision"], [])) <= 2  # stopped within maxFailedNodes (+ the trigger)
    assert get(c, "ds", name)["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:v1"
    history = c.kubectl("rollout", "history", f"ds/{name}")
    assert "3         kubeling rollout: FailureThresholdExceeded" in history
    assert {(p["spec"]["containers"][0]["image"], p["metadata"]["labels"][HASH]) for p in pods(c, name)} == \
        {("agent:v1", st["stableRevision"])}
    assert "FailureThresholdExceeded" in c.kubectl("get", "events", "--field-selector",
                                                   f"involvedObject.name={name},involvedObject.kind=DaemonSet")


def test_pause_action_then_abort(c: Cluster) -> None:
    name = "pauser"
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1", max_unavailable=1))
    c.kubectl("apply", "-f", "-", input=plan_manifest(name, steps=[{"nodes": "100%"}],
                                                      failurePolicy={"action": "Pause"}))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable")
    c.kubectl("set", "image", f"ds/{name}", "agent=agent:crash")
    st = c.wait_for(lambda: (s := plan_status(c, name)).get("phase") == "Failed" and s, what="failed and held")
    assert st["failedNodes"] and st["failedNodes"][0]["reason"] in ("CrashLoopBackOff", "Error", "Failed")
    assert get(c, "ds", name)["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:crash"
    kubeling(c, "rollout", "abort", f"ds/{name}")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "RolledBack" and ds_settled(c, name), what="aborted")
    assert get(c, "ds", name)["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:v1"


def test_manual_pause_holds_everything_then_promote(c: Cluster) -> None:
    name = "manual"
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1"))
    c.kubectl("apply", "-f", "-", input=plan_manifest(name, steps=[{"nodes": "100%"}]))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable")
    kubeling(c, "rollout", "pause", f"ds/{name}")
    c.kubectl("set", "image", f"ds/{name}", "agent=agent:v2")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Paused", what="paused")
    c.wait_for(lambda: get(c, "ds", name)["status"].get("observedGeneration") == 2, what="ds observed")
    assert get(c, "ds", name)["status"].get("updatedNumberScheduled", 0) == 0
    kubeling(c, "rollout", "promote", f"ds/{name}")
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="done")


def test_rollout_plan_writes_nothing(c: Cluster) -> None:
    name = "whatif"
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "agent:v1"))
    c.kubectl("apply", "-f", "-", input=plan_manifest(name, steps=[{"nodes": "10%"}, {"nodes": "100%"}]))
    c.wait_for(lambda: plan_status(c, name).get("phase") == "Succeeded" and ds_settled(c, name), what="stable")
    before = [get(c, "ds", name)["metadata"]["resourceVersion"], get(c, "rp", name)["metadata"]["resourceVersion"],
              len(get(c, "controllerrevisions")["items"])]
    out = yaml.safe_load(kubeling(c, "rollout", "plan", f"ds/{name}", "--image", "agent=agent:v9", "-o", "yaml"))
    assert [s["total"] for s in out["steps"]] == [1, 10]
    assert out["steps"][0]["new"] == ["node-1"] and len(out["steps"][1]["new"]) == 9
    assert any(r["node"] == "control-plane" and r["reason"] == "UntoleratedTaint" for r in out["ineligible"])
    after = [get(c, "ds", name)["metadata"]["resourceVersion"], get(c, "rp", name)["metadata"]["resourceVersion"],
             len(get(c, "controllerrevisions")["items"])]
    assert before == after


def test_why_reasons(c: Cluster) -> None:
    name = "why"
    for i in (1, 2, 3, 4):
        c.kubectl("label", "node", f"node-{i}", "why=yes", "--overwrite")
    c.kubectl("annotate", "node", "node-2", "kubeling.io/crash-images=whyimg:*", "--overwrite")
    c.kubectl("annotate", "node", "node-3", "kubeling.io/fail-images=whyimg:*", "--overwrite")
    c.kubectl("taint", "node", "node-4", "why=no:NoSchedule", "--overwrite")
    c.kubectl("apply", "-f", "-", input=ds_manifest(name, "whyimg:v1", node_selector={"why": "yes"}))

    def reasons() -> dict[str, str]:
        return {r["node"]: r["reason"] for r in yaml.safe_load(kubeling(c, "why", f"ds/{name}", "-o", "yaml"))}

    got = c.wait_for(lambda: (r := reasons()).get("node-1") == "Available"
                     and r.get("node-2") == "CrashLoopBackOff"
                     and r.get("node-3") in ("ErrImagePull", "ImagePullBackOff") and r, what="why reasons")
    assert got["node-4"] == "UntoleratedTaint" and got["node-5"] == "NodeSelectorMismatch"
    c.kubectl("apply", "-f", "-", input=ds_manifest("hungry", "agent:v1", cpu="1000"))
    msgs = c.wait_for(lambda: [r["message"] for r in yaml.safe_load(kubeling(c, "why", "ds/hungry", "node-1",
                                                                               "-o", "yaml"))
                               if "Insufficient cpu" in r["message"]], what="Insufficient cpu")
    assert msgs
    c.kubectl("taint", "node", "node-4", "why=no:NoSchedule-")
