"""Server-side Table printing: upstream columns, cell values and types, ages, negotiation."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from kubeling.api.tables import negotiate_table, table_version, to_table
from kubeling.api.timeutil import human_duration, parse_rfc3339, translate_timestamp_since

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def res(group: str, kind: str, namespaced: bool = True) -> SimpleNamespace:
    return SimpleNamespace(group=group, kind=kind, namespaced=namespaced, plural=kind.lower() + "s")


def md(name: str, created: str = "2024-05-01T11:55:00Z", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": created, **extra}


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    return to_table(res(group, kind), [obj], now=NOW)["rows"][0]["cells"]


def names(group: str, kind: str) -> list[str]:
    return [c["name"] for c in to_table(res(group, kind), [], now=NOW)["columnDefinitions"]]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (-1.5, "0s"), (-3, "<invalid>"), (5, "5s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
    (600, "10m"), (3 * 3600 + 4 * 60, "3h4m"), (10 * 3600, "10h"), (2 * 86400 + 3 * 3600, "2d3h"),
    (45 * 86400, "45d"), (3 * 365 * 86400, "3y"), (2 * 365 * 86400 + 10 * 86400, "2y10d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_timestamps() -> None:
    assert parse_rfc3339("2024-05-01T13:00:00+01:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_rfc3339("2024-05-01T12:00:00.123456Z").microsecond == 123456
    assert parse_rfc3339("nope") is None
    assert translate_timestamp_since(None, NOW) == "<unknown>"
    assert translate_timestamp_since("2024-05-01T11:59:55Z", NOW) == "5s"


def test_table_shape_and_include_object() -> None:
    pod = {"metadata": md("p"), "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}
    t = to_table(res("", "Pod"), [pod], now=NOW, list_meta={"resourceVersion": "7"})
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "7"}
    assert t["columnDefinitions"][0]["format"] == "name"
    assert t["columnDefinitions"][0]["description"].startswith("Name must be unique within a namespace")
    assert [c["priority"] for c in t["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert t["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                      "metadata": pod["metadata"]}
    assert to_table(res("", "Pod"), [pod], include_object="Object", now=NOW)["rows"][0]["object"] is pod
    assert to_table(res("", "Pod"), [pod], include_object="None", now=NOW)["rows"][0]["object"] is None
    empty = to_table(res("", "Pod"), [], now=NOW)
    assert empty["rows"] == [] and len(empty["columnDefinitions"]) == 9


def test_pod_columns_and_running_pod() -> None:
    assert names("", "Pod") == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                                "Readiness Gates"]
    pod = {"metadata": md("web"), "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
           "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [
                          {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
                           "lastState": {"terminated": {"finishedAt": "2024-05-01T11:55:00Z", "exitCode": 1}}},
                          {"name": "b", "ready": True, "restartCount": 0, "state": {"running": {}}}]}}
    assert cells("", "Pod", pod) == ["web", "2/2", "Running", "2 (5m ago)", "5m", "10.0.0.1", "n1", "<none>",
                                     "<none>"]


def _pod(phase: str = "Pending", statuses: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    pod = {"metadata": md("p"), "spec": {"containers": [{"name": "a"}]},
           "status": {"phase": phase, "containerStatuses": statuses or []}}
    pod["spec"].update(kw.pop("spec", {}))
    pod["status"].update(kw.pop("status", {}))
    pod["metadata"].update(kw.pop("metadata", {}))
    return pod


@pytest.mark.parametrize(("pod", "ready", "reason", "restarts"), [
    (_pod(), "0/1", "Pending", "0"),
    (_pod(statuses=[{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
     "0/1", "ContainerCreating", "0"),
    (_pod("Running", [{"name": "a", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
     "0/1", "CrashLoopBackOff", "3"),
    (_pod(statuses=[{"name": "a", "state": {"waiting": {"reason": "ErrImagePull"}}}]), "0/1", "ErrImagePull", "0"),
    (_pod("Succeeded", [{"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]),
     "0/1", "Completed", "0"),
    (_pod("Failed", [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
     "0/1", "Signal:9", "0"),
    (_pod("Failed", [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]), "0/1", "ExitCode:2", "0"),
    (_pod("Running", [{"name": "a", "ready": True, "state": {"running": {}}}],
          metadata={"deletionTimestamp": "2024-05-01T12:00:00Z"}), "1/1", "Terminating", "0"),
    (_pod("Running", metadata={"deletionTimestamp": "2024-05-01T12:00:00Z"}, status={"reason": "NodeLost"}),
     "0/1", "Unknown", "0"),
    (_pod(status={"reason": "Evicted", "phase": "Failed"}), "0/1", "Evicted", "0"),
    (_pod(spec={"initContainers": [{"name": "i1"}, {"name": "i2"}]},
          status={"initContainerStatuses": [
              {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
              {"name": "i2", "state": {"running": {}}}]}), "0/1", "Init:1/2", "0"),
    (_pod(spec={"initContainers": [{"name": "i1"}]},
          status={"initContainerStatuses": [{"name": "i1", "restartCount": 4,
                                             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
     "0/1", "Init:CrashLoopBackOff", "4"),
    (_pod(spec={"initContainers": [{"name": "i1"}]},
          status={"initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}),
     "0/1", "Init:ExitCode:3", "0"),
    (_pod(status={"conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
     "0/1", "SchedulingGated", "0"),
    (_pod("Running", [{"name": "a", "ready": True, "state": {"running": {}}}],
          spec={"initContainers": [{"name": "side", "restartPolicy": "Always"}]},
          status={"initContainerStatuses": [{"name": "side", "ready": True, "started": True,
                                             "state": {"running": {}}}]}), "2/2", "Running", "0"),
])
def test_pod_status_edge_cases(pod: dict[str, Any], ready: str, reason: str, restarts: str) -> None:
    row = cells("", "Pod", pod)
    assert row[1:4] == [ready, reason, restarts]


def test_pod_row_conditions_and_gates() -> None:
    done = _pod("Succeeded")
    row = to_table(res("", "Pod"), [done], now=NOW)["rows"][0]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]
    gated = _pod("Running", spec={"readinessGates": [{"conditionType": "x/a"}, {"conditionType": "x/b"}]},
                 status={"conditions": [{"type": "x/a", "status": "True"}], "nominatedNodeName": "n2"})
    assert cells("", "Pod", gated)[7:] == ["n2", "1/2"]


def test_node() -> None:
    assert names("", "Node") == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP",
                                 "OS-Image", "Kernel-Version", "Container-Runtime"]
    node = {"metadata": md("n1", "2024-04-29T09:00:00Z",
                           labels={"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
                                   "kubernetes.io/role": "worker"}),
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.1.0.2"},
                                     {"type": "Hostname", "address": "n1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "kubeling",
                                    "containerRuntimeVersion": "fake://1"}}}
    assert cells("", "Node", node) == ["n1", "Ready,SchedulingDisabled", "control-plane,worker", "2d3h", "v1.32.0",
                                       "10.1.0.2", "<none>", "kubeling", "<unknown>", "fake://1"]
    bare = {"metadata": md("n2"), "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert cells("", "Node", bare)[1:3] == ["NotReady", "<none>"]
    assert cells("", "Node", {"metadata": md("n3")})[1] == "Unknown"


def test_daemonset() -> None:
    assert names("apps", "DaemonSet") == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                                          "Node Selector", "Age", "Containers", "Images", "Selector"]
    ds = {"metadata": md("fluentd", "2024-03-17T12:00:00Z"),
          "spec": {"selector": {"matchLabels": {"name": "fluentd"}},
                   "template": {"spec": {"nodeSelector": {"b": "2", "a": "1"},
                                         "containers": [{"name": "f", "image": "fluentd:v1"},
                                                        {"name": "g", "image": "busybox"}]}}},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 1}}
    assert cells("apps", "DaemonSet", ds) == ["fluentd", 3, 3, 2, 1, 0, "a=1,b=2", "45d", "f,g",
                                              "fluentd:v1,busybox", "name=fluentd"]
    no_sel = {"metadata": md("x"), "spec": {"template": {"spec": {"containers": []}}}}
    assert cells("apps", "DaemonSet", no_sel)[6] == "<none>"


def test_statefulset_deployment_replicaset() -> None:
    assert names("apps", "StatefulSet") == ["Name", "Ready", "Age", "Containers", "Images"]
    sts = {"metadata": md("db"), "spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "pg", "image": "postgres:16"}]}}}, "status": {"readyReplicas": 1}}
    assert cells("apps", "StatefulSet", sts) == ["db", "1/3", "5m", "pg", "postgres:16"]
    deploy = {"metadata": md("web"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                              "template": {"spec": {"containers": [{"name": "n", "image": "nginx"}]}}},
              "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
    assert cells("apps", "Deployment", deploy) == ["web", "2/2", 2, 2, "5m", "n", "nginx", "app=web"]
    rs = {"metadata": md("web-1"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                            "template": {"spec": {"containers": []}}}, "status": {"replicas": 2}}
    assert cells("apps", "ReplicaSet", rs) == ["web-1", 2, 2, 0, "5m", "", "", "app=web"]


def test_controller_revision() -> None:
    assert names("apps", "ControllerRevision") == ["Name", "Controller", "Revision", "Age"]
    cr = {"metadata": md("fluentd-5d4f", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd-elasticsearch", "controller": True}]),
        "revision": 2}
    assert cells("apps", "ControllerRevision", cr) == ["fluentd-5d4f", "daemonset.apps/fluentd-elasticsearch", 2, "5m"]
    orphan = {"metadata": md("x"), "revision": 1}
    assert cells("apps", "ControllerRevision", orphan)[1] == "<none>"
    core_owner = {"metadata": md("y", ownerReferences=[{"apiVersion": "v1", "kind": "Pod", "name": "p",
                                                         "controller": True}]), "revision": 1}
    assert cells("apps", "ControllerRevision", core_owner)[1] == "pod/p"


def test_events_core_and_events_v1() -> None:
    assert names("", "Event") == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                                  "First Seen", "Count", "Name"]
    ev = {"metadata": md("p.17a"), "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
          "reason": "Pulled", "message": " pulled \n", "type": "Normal",
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 3}
    assert cells("", "Event", ev) == ["60s", "Normal", "Pulled", "pod/p", "spec.containers{a}", "kubelet, n1",
                                      "pulled", "10m", 3, "p.17a"]
    new = {"metadata": md("e2"), "regarding": {"kind": "DaemonSet", "name": "ds"}, "reason": "SuccessfulCreate",
           "note": "Created pod", "type": "Normal", "eventTime": "2024-05-01T11:59:30.000000Z",
           "reportingController": "daemonset-controller", "reportingInstance": ""}
    row = cells("events.k8s.io", "Event", new)
    assert row == ["30s", "Normal", "SuccessfulCreate", "daemonset/ds", "", "daemonset-controller", "Created pod",
                   "30s", 1, "e2"]
    series = dict(new, series={"count": 5, "lastObservedTime": "2024-05-01T11:59:58.000000Z"})
    assert cells("events.k8s.io", "Event", series)[0] == "2s"
    assert cells("events.k8s.io", "Event", series)[8] == 5


def test_simple_kinds() -> None:
    assert cells("", "Namespace", {"metadata": md("kube-system"), "status": {"phase": "Active"}}) == \
        ["kube-system", "Active", "5m"]
    assert cells("", "ConfigMap", {"metadata": md("c"), "data": {"a": "1"}, "binaryData": {"b": ""}}) == ["c", 2, "5m"]
    assert cells("", "Secret", {"metadata": md("s"), "type": "Opaque", "data": {"k": "dg=="}}) == \
        ["s", "Opaque", 1, "5m"]
    assert cells("", "ServiceAccount", {"metadata": md("default")}) == ["default", 0, "5m"]
    assert cells("coordination.k8s.io", "Lease", {"metadata": md("kube-scheduler"),
                                                  "spec": {"holderIdentity": "node_1"}}) == \
        ["kube-scheduler", "node_1", "5m"]
    assert cells("scheduling.k8s.io", "PriorityClass",
                 {"metadata": md("system-node-critical"), "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"}) \
        == ["system-node-critical", 2000001000, False, "5m", "PreemptLowerPriority"]
    assert names("scheduling.k8s.io", "PriorityClass") == ["Name", "Value", "Global-Default", "Age",
                                                           "PreemptionPolicy"]
    rb = {"metadata": md("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                       {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}
    assert cells("rbac.authorization.k8s.io", "RoleBinding", rb) == ["rb", "ClusterRole/view", "5m", "alice", "devs",
                                                                     "ns/sa"]


def test_service() -> None:
    svc = {"metadata": md("web"), "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                                           "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                                     {"port": 53, "protocol": "UDP"}],
                                           "selector": {"app": "web"}}}
    assert cells("", "Service", svc) == ["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "5m",
                                         "app=web"]
    lb = {"metadata": md("lb"), "spec": {"type": "LoadBalancer", "clusterIP": "None"}}
    assert cells("", "Service", lb)[2:5] == ["None", "<pending>", "<none>"]


def test_default_table_for_kinds_without_printer() -> None:
    t = to_table(res("rbac.authorization.k8s.io", "ClusterRole", False),
                 [{"metadata": {"name": "admin", "creationTimestamp": "2024-05-01T11:00:00Z"}}], now=NOW)
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [("Name", "string"), ("Created At", "date")]
    assert t["rows"][0]["cells"] == ["admin", "2024-05-01T11:00:00Z"]
    crd = to_table(res("apiextensions.k8s.io", "CustomResourceDefinition", False), [], now=NOW)
    assert [c["name"] for c in crd["columnDefinitions"]] == ["Name", "Created At"]


def test_job_and_cronjob() -> None:
    job = {"metadata": md("pi"), "spec": {"completions": 1, "template": {"spec": {"containers": [
        {"name": "pi", "image": "perl"}]}}, "selector": {"matchLabels": {"job": "pi"}}},
        "status": {"succeeded": 1, "startTime": "2024-05-01T11:55:00Z", "completionTime": "2024-05-01T11:55:30Z",
                   "conditions": [{"type": "Complete", "status": "True"}]}}
    assert cells("batch", "Job", job) == ["pi", "Complete", "1/1", "30s", "5m", "pi", "perl", "job=pi"]
    cj = {"metadata": md("hello"), "spec": {"schedule": "*/1 * * * *", "suspend": False,
                                            "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}},
          "status": {}}
    assert cells("batch", "CronJob", cj)[:7] == ["hello", "*/1 * * * *", "<none>", "False", 0, "<none>", "5m"]


def test_negotiation() -> None:
    kubectl = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
               "application/json")
    assert negotiate_table(kubectl) and table_version(kubectl) == "v1"
    assert table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1"
    assert not negotiate_table("application/json")
    assert not negotiate_table(None)
    assert not negotiate_table("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
    assert not negotiate_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io")
    assert negotiate_table("application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io")
