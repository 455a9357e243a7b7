"""DaemonSet rolling updates over 50 simulated nodes, checked event by event, and rollout commands.

A watcher records every pod event of a rollout; replaying them proves the invariants upstream
promises at every instant (not just at the end): never more than maxUnavailable nodes without an
available daemon pod, never two pods on a node without surge, never a node without an available
pod with surge and maxUnavailable 0. Also: failed pods replaced with back-off, a rollout stuck on
an image that never pulls recovered by `rollout undo`, and kubectl's rollout pause/resume/history/undo
answers, including history data with `&&` that must match kubectl's bytes for "skipped rollback".
(Adoption of orphans is in test_daemonset_integration.py.)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster

NODES = 50
WORKERS = [f"node-{i}" for i in range(1, NODES + 1)]


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kubeling") / "data", nodes=NODES)
    c.start()
    try:
        c.wait_for(lambda: len(ready_nodes(c)) == NODES + 1, timeout=120, what="all nodes Ready")
        yield c
    finally:
        c.stop()


def ready_nodes(c: Cluster) -> list[str]:
    items = json.loads(c.kubectl("get", "nodes", "-o", "json"))["items"]
    return [n["metadata"]["name"] for n in items
            if any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions") or [])]


def ds_manifest(name: str, *, image: str = "busybox:1", strategy: dict | None = None,
                node_selector: dict | None = None, command: list[str] | None = None) -> str:
    container: dict[str, Any] = {"name": "c", "image": image}
    if command:
        container["command"] = command
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [container]}}}
    if node_selector:
        spec["template"]["spec"]["nodeSelector"] = node_selector
    if strategy:
        spec["updateStrategy"] = strategy
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet",
                       "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def rolling(*, max_unavailable: int | str = 1, max_surge: int | str = 0) -> dict:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}}


def ds_status(c: Cluster, name: str) -> dict:
    return json.loads(c.kubectl("get", "ds", name, "-o", "json")).get("status") or {}


def pod_list(c: Cluster, app: str) -> dict:
    return json.loads(c.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))


def target(pod: dict) -> str:
    """The node a daemon pod is pinned to (by the injected affinity; nodeName once bound)."""
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]


def ready(pod: dict) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True"
               for x in (pod.get("status") or {}).get("conditions") or [])


def terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def image(pod: dict) -> str:
    return pod["spec"]["containers"][0]["image"]


def wait_available(c: Cluster, name: str, count: int, *, timeout: float = 120) -> None:
    def done() -> bool:
        s = ds_status(c, name)
        return (s.get("numberAvailable") == count and s.get("updatedNumberScheduled") == count
                and s.get("desiredNumberScheduled") == count)
    c.wait_for(done, timeout=timeout, what=f"{name}: {count} pods available")


class PodRecorder:
    """Every pod event of one DaemonSet from a list's resourceVersion on, via the Python client's watch."""

    def __init__(self, c: Cluster, app: str) -> None:
        from kubernetes import client

        self.cluster = c
        self.app = app
        self.core = client.CoreV1Api(c.api_client())
        first = pod_list(c, app)
        self.initial = {p["metadata"]["name"]: p for p in first["items"]}
        self.rv = first["metadata"]["resourceVersion"]
        self.events: list[tuple[str, dict]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        self._watch = watch.Watch()
        try:
            for ev in self._watch.stream(self.core.list_namespaced_pod, "default", label_selector=f"app={self.app}",
                                         resource_version=self.rv, timeout_seconds=600):
                self.events.append((ev["type"], ev["raw_object"]))
                if self._stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            if not self._stop.is_set():
                self.error = exc

    def states(self) -> Iterator[dict[str, dict]]:
        """The pods as they stood after each recorded event."""
        state = dict(self.initial)
        yield state
        for kind, obj in list(self.events):
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                state.pop(name, None)
            elif kind in ("ADDED", "MODIFIED"):
                state[name] = obj
            yield state

    def final(self) -> dict[str, dict]:
        return deque(self.states(), maxlen=1)[0]

    def stop_when_caught_up(self) -> None:
        """Wait until the replayed state equals a fresh list, so no event of the rollout is missing."""
        def caught_up() -> bool:
            if self.error:
                raise self.error
            listed = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in pod_list(self.cluster,
                                                                                              self.app)["items"]}
            seen = {n: p["metadata"]["resourceVersion"] for n, p in self.final().items()}
            return listed == seen
        self.cluster.wait_for(caught_up, timeout=60, what="the watcher caught up with the pod list")
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        assert self.error is None, self.error


def available_nodes(state: dict[str, dict]) -> set[str]:
    return {target(p) for p in state.values() if not terminating(p) and ready(p)}


def pods_per_node(state: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in state.values():
        if not terminating(p):
            counts[target(p)] = counts.get(target(p), 0) + 1
    return counts


def test_rolling_update_never_exceeds_max_unavailable(kc: Cluster) -> None:
    kc.kubectl("create", "-f", "-", input=ds_manifest("roll", strategy=rolling(max_unavailable="10%")))
    wait_available(kc, "roll", NODES)
    assert sorted(target(p) for p in pod_list(kc, "roll")["items"]) == sorted(WORKERS)
    recorder = PodRecorder(kc, "roll")
    kc.kubectl("set", "image", "ds/roll", "c=busybox:2")
    out = kc.kubectl("rollout", "status", "ds/roll", "--timeout=180s", timeout=200)
    assert 'daemon set "roll" successfully rolled out' in out
    recorder.stop_when_caught_up()

    max_allowed = 5  # 10% of 50, rounded up
    worst = 0
    for state in recorder.states():
        unavailable = NODES - len(available_nodes(state) & set(WORKERS))
        worst = max(worst, unavailable)
        assert unavailable <= max_allowed, f"{unavailable} nodes without an available pod"
        doubled = {n: k for n, k in pods_per_node(state).items() if k > 1}
        assert not doubled, f"two daemon pods on a node without surge: {doubled}"
    assert worst > 0, "the rollout replaced pods"
    final = recorder.final()
    assert sorted(target(p) for p in final.values()) == sorted(WORKERS)
    assert {image(p) for p in final.values()} == {"busybox:2"}
    deleted = [o["metadata"]["name"] for k, o in recorder.events if k == "DELETED"]
    assert len(deleted) == NODES, "each old pod was deleted exactly once"


def test_surge_never_leaves_a_node_without_an_available_pod(kc: Cluster) -> None:
    # A fifth of the nodes keeps the one-at-a-time surge short.
    nodes = WORKERS[:10]
    kc.kubectl("label", "nodes", *nodes, "surge=yes")
    kc.kubectl("create", "-f", "-", input=ds_manifest("surge", strategy=rolling(max_unavailable=0, max_surge=1),
                                                      node_selector={"surge": "yes"}))
    wait_available(kc, "surge", len(nodes))
    recorder = PodRecorder(kc, "surge")
    kc.kubectl("set", "image", "ds/surge", "c=busybox:2")
    out = kc.kubectl("rollout", "status", "ds/surge", "--timeout=180s", timeout=200)
    assert 'daemon set "surge" successfully rolled out' in out
    recorder.stop_when_caught_up()

    most = 0
    for state in recorder.states():
        missing = set(nodes) - available_nodes(state)
        assert not missing, f"nodes without an available daemon pod: {sorted(missing)}"
        per_node = pods_per_node(state)
        assert max(per_node.values()) <= 2
        most = max(most, sum(1 for k in per_node.values() if k > 1))
        assert most <= 1, "maxSurge 1: at most one node with a surge pod"
    assert most == 1, "a new pod started beside an old one"
    assert {image(p) for p in recorder.final().values()} == {"busybox:2"}


def test_failed_pod_is_replaced_with_backoff(kc: Cluster) -> None:
    kc.kubectl("create", "-f", "-", input=ds_manifest("fail", node_selector={"kubernetes.io/hostname": "node-7"}))
    wait_available(kc, "fail", 1)

    def current() -> str | None:
        live = [p for p in pod_list(kc, "fail")["items"] if not terminating(p)]
        return live[0]["metadata"]["name"] if len(live) == 1 else None

    def fail(name: str) -> float:
        sent = time.monotonic()
        kc.kubectl("patch", "pod", name, "--subresource=status", "--type=merge",
                   "-p", '{"status":{"phase":"Failed"}}')
        return sent

    def gone(name: str) -> bool:
        r = kc.kubectl_result("get", "pod", name, "-o", "json")
        return r.returncode != 0 or terminating(json.loads(r.stdout))

    names = [kc.wait_for(current, what="the daemon pod")]
    sent: list[float] = []
    for _ in range(3):
        sent.append(fail(names[-1]))
        kc.wait_for(lambda: gone(names[-1]), timeout=60, what=f"failed pod {names[-1]} deleted")
        if len(sent) == 3:
            deleted_at = time.monotonic()
        names.append(kc.wait_for(lambda: (n := current()) not in names and n, timeout=60,
                                 what="a replacement pod"))
    # Back-off 1 s then 2 s: the third failed pod cannot go before 2 s after the second one failed.
    assert deleted_at - sent[1] >= 2.0
    assert len(set(names)) == 4
    wait_available(kc, "fail", 1)

    def events() -> list[str]:
        out = kc.kubectl("get", "events", "--field-selector", "reason=FailedDaemonPod", "-o", "json")
        return [e["message"] for e in json.loads(out)["items"]]
    for name in names[:3]:
        kc.wait_for(lambda n=name: f"Found failed daemon pod default/{n} on node node-7, will try to kill it"
                    in events(), what=f"FailedDaemonPod event for {name}")


def test_broken_image_stalls_and_undo_recovers(kc: Cluster) -> None:
    kc.kubectl("set", "image", "ds/roll", "c=busybox:broken-1")
    kc.wait_for(lambda: ds_status(kc, "roll").get("observedGeneration") == 3, what="generation 3 observed")

    def stalled() -> bool:
        broken = [p for p in pod_list(kc, "roll")["items"] if image(p) == "busybox:broken-1"]
        reasons = {s.get("state", {}).get("waiting", {}).get("reason")
                   for p in broken for s in (p.get("status") or {}).get("containerStatuses") or []}
        return len(broken) == 5 and reasons <= {"ErrImagePull", "ImagePullBackOff"} and bool(reasons)
    kc.wait_for(stalled, timeout=60, what="five pods stuck pulling the broken image")
    kc.wait_for(lambda: {k: ds_status(kc, "roll").get(k) for k in ("updatedNumberScheduled", "numberAvailable",
                                                                   "numberUnavailable")}
                == {"updatedNumberScheduled": 5, "numberAvailable": NODES - 5, "numberUnavailable": 5},
                what="status: 5 updated and unavailable")
    r = kc.kubectl_result("rollout", "status", "ds/roll", "--timeout=2s")
    assert r.returncode != 0
    assert 'Waiting for daemon set "roll" rollout to finish: 5 out of 50 new pods have been updated...' in r.stdout
    # still stuck: the controller never replaces more while five are unavailable
    assert sum(image(p) == "busybox:broken-1" for p in pod_list(kc, "roll")["items"]) == 5

    out = kc.kubectl("rollout", "undo", "ds/roll")
    assert "daemonset.apps/roll rolled back" in out
    out = kc.kubectl("rollout", "status", "ds/roll", "--timeout=120s", timeout=140)
    assert 'daemon set "roll" successfully rolled out' in out
    wait_available(kc, "roll", NODES)
    assert {image(p) for p in pod_list(kc, "roll")["items"] if not terminating(p)} == {"busybox:2"}


def test_pause_resume_and_history(kc: Cluster) -> None:
    r = kc.kubectl_result("rollout", "pause", "ds/roll")
    assert r.returncode == 1
    assert r.stderr.strip() == 'error: daemonsets.apps "roll" pausing is not supported'
    r = kc.kubectl_result("rollout", "resume", "ds/roll")
    assert r.returncode == 1
    assert r.stderr.strip() == 'error: daemonsets.apps "roll" resuming is not supported'

    # roll: revision 1 busybox:1, 3 broken (undone), 4 = busybox:2 again (was 2)
    out = kc.kubectl("rollout", "history", "ds/roll")
    lines = [ln.split() for ln in out.strip().splitlines()]
    assert lines[0] == ["daemonset.apps/roll"] and lines[1] == ["REVISION", "CHANGE-CAUSE"]
    assert lines[2:] == [["1", "<none>"], ["3", "<none>"], ["4", "<none>"]]
    out = kc.kubectl("rollout", "history", "ds/roll", "--revision=3")
    assert out.startswith("daemonset.apps/roll with revision #3\nPod Template:\n")
    assert "busybox:broken-1" in out and "busybox:2" not in out
    r = kc.kubectl_result("rollout", "history", "ds/roll", "--revision=2")
    assert r.returncode != 0
    assert "unable to find the specified revision" in r.stderr
    r = kc.kubectl_result("rollout", "undo", "ds/roll", "--to-revision=4")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "daemonset.apps/roll skipped rollback (current template already matches revision 4)"


def test_history_bytes_escape_like_go(kc: Cluster) -> None:
    """A template with `&&` `<` `>`: the revision data must match kubectl's json.Marshal byte for byte."""
    kc.kubectl("create", "-f", "-", input=ds_manifest(
        "amp", command=["sh", "-c", "test 1 < 2 && echo '<ok>' > /tmp/x && sleep 3600"],
        node_selector={"kubernetes.io/hostname": "node-3"}))
    kc.wait_for(lambda: ds_status(kc, "amp").get("observedGeneration") == 1, what="amp observed")

    def revision() -> dict | None:
        items = json.loads(kc.kubectl("get", "controllerrevisions", "-l", "app=amp", "-o", "json"))["items"]
        return items[0] if len(items) == 1 else None
    rev = kc.wait_for(revision, what="one revision")
    raw = kc.kubectl("get", "--raw", f"/apis/apps/v1/namespaces/default/controllerrevisions/{rev['metadata']['name']}")
    assert "\\u0026\\u0026" in raw and "\\u003c" in raw and "\\u003e" in raw
    assert "&" not in raw and "<" not in raw and ">" not in raw
    # the escapes are only an encoding: clients decode the original command
    assert json.loads(raw)["data"]["spec"]["template"]["spec"]["containers"][0]["command"][2].count("&&") == 2
    r = kc.kubectl_result("rollout", "undo", "ds/amp", "--to-revision=1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "daemonset.apps/amp skipped rollback (current template already matches revision 1)"


def test_responses_escape_html_characters_as_go_does() -> None:
    from kubeling.apiserver.handlers import go_json

    body = {"cmd": "a && b < c > d", "sep": "\u2028\u2029", "plain": "é"}
    assert go_json(body) == ('{"cmd":"a \\u0026\\u0026 b \\u003c c \\u003e d","sep":"\\u2028\\u2029",'
                             '"plain":"é"}').encode()
    assert json.loads(go_json(body)) == body
