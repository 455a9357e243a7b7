"""The StatefulSet controller end to end: kubeling up with nodes, driven by the real kubectl."""

from __future__ import annotations

import json
import threading
from typing import Any


def sts_yaml(name: str, *, replicas: int = 3, image: str = "mysql:5.7.2", policy: str = "OrderedReady",
             claims: bool = False, retention: str = "", extra_spec: str = "") -> str:
    vct = """
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi""" if claims else ""
    return f"""apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: {replicas}
  podManagementPolicy: {policy}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: {image}{retention}{extra_spec}{vct}
"""


def images(c: Any, app: str) -> dict[str, str]:
    out = c.kubectl("get", "pods", "-l", f"app={app}", "-o", "json")
    return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in json.loads(out)["items"]
            if not p["metadata"].get("deletionTimestamp")}


def sts_status(c: Any, name: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", "sts", name, "-o", "json")).get("status") or {}


def wait_ready(c: Any, name: str, replicas: int, timeout: float = 90) -> None:
    def done() -> bool:
        s = sts_status(c, name)
        return (s.get("readyReplicas") == replicas and s.get("updatedReplicas") == replicas
                and s.get("currentRevision") == s.get("updateRevision"))
    c.wait_for(done, timeout=timeout, what=f"statefulset {name} with {replicas} ready replicas")


def is_ready(pod: Any) -> bool:
    conds = (pod.status.conditions or []) if pod.status else []
    return (pod.status is not None and pod.status.phase == "Running"
            and any(cd.type == "Ready" and cd.status == "True" for cd in conds))


class PodWatcher:
    """Records (event type, pod name, ready, terminating) for pods of one app, in order."""

    def __init__(self, c: Any, app: str) -> None:
        from kubernetes import client, watch

        self.events: list[tuple[str, str, bool, bool]] = []
        self.error: BaseException | None = None
        self._watch = watch.Watch()
        api = client.CoreV1Api(c.api_client())
        self._thread = threading.Thread(target=self._run, args=(api, app), daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)

    def _run(self, api: Any, app: str) -> None:
        rv = api.list_namespaced_pod("default", label_selector=f"app={app}").metadata.resource_version
        self._started.set()
        try:
            for ev in self._watch.stream(api.list_namespaced_pod, "default", label_selector=f"app={app}",
                                         resource_version=rv, timeout_seconds=300):
                pod = ev["object"]
                self.events.append((ev["type"], pod.metadata.name, is_ready(pod),
                                    pod.metadata.deletion_timestamp is not None))
        except Exception as exc:  # noqa: BLE001 - the test asserts on what was seen
            self.error = exc

    def stop(self) -> None:
        self.check()
        self._watch.stop()

    def check(self) -> None:
        assert self.error is None, f"pod watch broke: {self.error!r}"


def test_ordered_creation_observed_by_watcher(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    watcher = PodWatcher(c, "ordered")
    c.kubectl("apply", "-f", "-", input=sts_yaml("ordered"))
    wait_ready(c, "ordered", 3)
    watcher.stop()
    ready_seen: set[str] = set()
    for etype, name, ready, _ in watcher.events:
        if etype == "ADDED":
            ordinal = int(name.rsplit("-", 1)[1])
            if ordinal > 0:
                assert f"ordered-{ordinal - 1}" in ready_seen, f"{name} created before its predecessor was Ready"
        if ready:
            ready_seen.add(name)
    assert [n for t, n, _, _ in watcher.events if t == "ADDED"] == ["ordered-0", "ordered-1", "ordered-2"]
    pod = json.loads(c.kubectl("get", "pod", "ordered-1", "-o", "json"))
    assert pod["spec"]["hostname"] == "ordered-1" and pod["spec"]["subdomain"] == "ordered"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "ordered-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"] == sts_status(c, "ordered")["updateRevision"]
    [ref] = pod["metadata"]["ownerReferences"]
    assert ref["kind"] == "StatefulSet" and ref["controller"] is True
    events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=ordered", "-o",
                       "jsonpath={range .items[*]}{.reason}:{.message}{\"\\n\"}{end}")
    assert "SuccessfulCreate:create Pod ordered-0 in StatefulSet ordered successful" in events


def test_rolling_update_reverse_order_observed_by_watcher(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    wait_ready(c, "ordered", 3)
    watcher = PodWatcher(c, "ordered")
    c.kubectl("set", "image", "sts/ordered", "main=mysql:5.7.23")
    out = c.kubectl("rollout", "status", "sts/ordered", "--timeout=90s")
    assert "partitioned roll out complete: 3 new pods have been updated..." in out
    wait_ready(c, "ordered", 3)
    watcher.stop()
    deletions = []
    for etype, name, _, terminating in watcher.events:
        if (terminating or etype == "DELETED") and name not in deletions:
            deletions.append(name)
    assert deletions == ["ordered-2", "ordered-1", "ordered-0"]
    # each replacement was Ready before the next pod was asked to go
    for i, victim in enumerate(["ordered-1", "ordered-0"]):
        first_term = next(k for k, e in enumerate(watcher.events) if e[1] == victim and (e[3] or e[0] == "DELETED"))
        replaced = f"ordered-{2 - i}"
        assert any(e[1] == replaced and e[0] != "DELETED" and e[2] and not e[3]
                   for e in watcher.events[:first_term]), f"{victim} deleted before {replaced} was Ready again"
    assert set(images(c, "ordered").values()) == {"mysql:5.7.23"}


def test_partition_canary_and_deleted_pod_below_partition(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    c.kubectl("apply", "-f", "/work/shared/manifests/mysql-statefulset.yaml")
    wait_ready(c, "mysql", 3)
    out = c.kubectl("patch", "statefulset", "mysql", "--type=json", "-p",
                    '[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value":"mysql:5.7.23"}]')
    assert "statefulset.apps/mysql patched" in out
    c.wait_for(lambda: images(c, "mysql") == {f"mysql-{i}": "mysql:5.7.23" for i in range(3)}, timeout=90,
               what="all replicas on 5.7.23")
    wait_ready(c, "mysql", 3)
    c.kubectl("patch", "statefulset", "mysql", "-p",
              '{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}')
    c.kubectl("set", "image", "statefulset/mysql", "mysql=mysql:5.7.24")
    canary = {"mysql-0": "mysql:5.7.23", "mysql-1": "mysql:5.7.23", "mysql-2": "mysql:5.7.24"}
    c.wait_for(lambda: images(c, "mysql") == canary, timeout=90, what="only ordinal 2 updated")
    out = c.kubectl("rollout", "status", "sts/mysql", "--timeout=90s")
    assert "partitioned roll out complete: 1 new pods have been updated..." in out
    c.kubectl("delete", "pod", "mysql-0", "--wait=false")
    c.wait_for(lambda: images(c, "mysql") == canary and sts_status(c, "mysql").get("readyReplicas") == 3,
               timeout=90, what="mysql-0 back on the old version")
    st = sts_status(c, "mysql")
    assert st["currentRevision"] != st["updateRevision"]
    assert st["updatedReplicas"] == 1 and st["currentReplicas"] == 2
    c.kubectl("patch", "statefulset", "mysql", "-p", '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')
    c.wait_for(lambda: images(c, "mysql") == {f"mysql-{i}": "mysql:5.7.24" for i in range(3)}, timeout=90,
               what="partition 0 finishes the roll out")
    wait_ready(c, "mysql", 3)
    out = c.kubectl("rollout", "status", "sts/mysql", "--timeout=60s")
    assert "partitioned roll out complete: 3 new pods have been updated..." in out
    st = sts_status(c, "mysql")
    assert st["currentRevision"] == st["updateRevision"] and st["currentReplicas"] == 3


def test_rollback_by_rollout_undo(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    wait_ready(c, "mysql", 3)
    before = c.kubectl("rollout", "history", "sts/mysql")
    numbers = [int(line.split()[0]) for line in before.splitlines()[2:] if line.strip()]
    assert numbers == sorted(numbers) and len(numbers) >= 3
    out = c.kubectl("rollout", "undo", "sts/mysql")
    assert "statefulset.apps/mysql rolled back" in out
    c.wait_for(lambda: images(c, "mysql") == {f"mysql-{i}": "mysql:5.7.23" for i in range(3)}, timeout=90,
               what="rolled back to 5.7.23")
    wait_ready(c, "mysql", 3)
    after = c.kubectl("rollout", "history", "sts/mysql")
    new_numbers = [int(line.split()[0]) for line in after.splitlines()[2:] if line.strip()]
    assert max(new_numbers) == max(numbers) + 1 and len(new_numbers) == len(numbers)
    out = c.kubectl("rollout", "undo", "sts/mysql", f"--to-revision={max(new_numbers)}")
    assert "skipped rollback (current template already matches revision" in out


def test_scale_up_and_down(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    wait_ready(c, "mysql", 3)
    assert "statefulset.apps/mysql scaled" in c.kubectl("scale", "sts/mysql", "--replicas=5")
    wait_ready(c, "mysql", 5)
    assert sorted(images(c, "mysql")) == [f"mysql-{i}" for i in range(5)]
    c.kubectl("scale", "sts/mysql", "--replicas=2")
    c.wait_for(lambda: sorted(images(c, "mysql")) == ["mysql-0", "mysql-1"] and
               sts_status(c, "mysql").get("replicas") == 2, timeout=90, what="scaled down to 2")
    events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=mysql,reason=SuccessfulDelete",
                       "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
    assert "delete Pod mysql-4 in StatefulSet mysql successful" in events
    assert "READY" in c.kubectl("get", "sts", "mysql")


def test_parallel_policy(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    c.kubectl("apply", "-f", "-", input=sts_yaml("par", replicas=4, policy="Parallel"))
    wait_ready(c, "par", 4)
    c.kubectl("scale", "sts/par", "--replicas=1")
    c.wait_for(lambda: sorted(images(c, "par")) == ["par-0"], timeout=90, what="parallel scale down")


def test_volume_claims_and_retention(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    retention = """
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Delete"""
    c.kubectl("apply", "-f", "-", input=sts_yaml("db", replicas=2, claims=True, retention=retention))
    wait_ready(c, "db", 2)
    pvcs = json.loads(c.kubectl("get", "pvc", "-l", "app=db", "-o", "json"))["items"]
    assert sorted(p["metadata"]["name"] for p in pvcs) == ["data-db-0", "data-db-1"]
    pod = json.loads(c.kubectl("get", "pod", "db-1", "-o", "json"))
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in pod["spec"]["volumes"]
    events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=db", "-o",
                       "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
    assert "create Claim data-db-0 Pod db-0 in StatefulSet db success" in events
    c.kubectl("scale", "sts/db", "--replicas=1")
    c.wait_for(lambda: "data-db-1" not in c.kubectl("get", "pvc", "-o", "name"), timeout=90,
               what="the scaled-down claim deleted with its pod (whenScaled: Delete)")
    assert "data-db-0" in c.kubectl("get", "pvc", "-o", "name")
    # Retain (the default): claims outlive scale down
    c.kubectl("apply", "-f", "-", input=sts_yaml("keep", replicas=2, claims=True))
    wait_ready(c, "keep", 2)
    c.kubectl("scale", "sts/keep", "--replicas=1")
    c.wait_for(lambda: sorted(images(c, "keep")) == ["keep-0"], timeout=90, what="keep scaled down")
    assert "data-keep-1" in c.kubectl("get", "pvc", "-o", "name")


def test_rolling_update_stuck_on_failing_image_and_recovered(cluster_with_nodes: Any) -> None:
    c = cluster_with_nodes
    c.kubectl("apply", "-f", "-", input=sts_yaml("stuck", replicas=3))
    wait_ready(c, "stuck", 3)
    c.kubectl("set", "image", "sts/stuck", "main=mysql:broken")

    def stuck() -> bool:
        pod = json.loads(c.kubectl("get", "pod", "stuck-2", "-o", "json"))
        waiting = [(cs.get("state") or {}).get("waiting", {}).get("reason")
                   for cs in (pod.get("status") or {}).get("containerStatuses") or []]
        return pod["spec"]["containers"][0]["image"] == "mysql:broken" and \
            bool({"ErrImagePull", "ImagePullBackOff"} & set(waiting))
    c.wait_for(stuck, timeout=90, what="stuck-2 failing to pull")
    r = c.kubectl_result("rollout", "status", "sts/stuck", "--timeout=3s")
    assert r.returncode != 0
    assert images(c, "stuck") == {"stuck-0": "mysql:5.7.2", "stuck-1": "mysql:5.7.2", "stuck-2": "mysql:broken"}
    # recovery as upstream documents it: revert the template, then delete the broken pod
    c.kubectl("rollout", "undo", "sts/stuck")
    c.kubectl("delete", "pod", "stuck-2", "--wait=false")
    c.wait_for(lambda: images(c, "stuck") == {f"stuck-{i}": "mysql:5.7.2" for i in range(3)}, timeout=90,
               what="stuck-2 back on the good image")
    wait_ready(c, "stuck", 3)
