"""The official `kubernetes` Python client creates, lists, watches, patches and deletes the issue's kinds."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api(cluster):
    c = cluster.api_client()
    yield c
    c.close()


def _ds(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "labels": {"k": name}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}


def test_daemonset_crud_and_patches(api):
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_daemon_set("default", _ds("pyds"))
    assert created.metadata.uid and created.spec.update_strategy.rolling_update.max_unavailable == 1
    listed = apps.list_namespaced_daemon_set("default", label_selector="k=pyds")
    assert [d.metadata.name for d in listed.items] == ["pyds"]
    merged = apps.patch_namespaced_daemon_set("pyds", "default", {"metadata": {"labels": {"m": "1"}}})
    assert merged.metadata.labels == {"k": "pyds", "m": "1"}
    # the client picks json-patch for a list body
    jp = apps.patch_namespaced_daemon_set("pyds", "default",
                                          [{"op": "add", "path": "/spec/minReadySeconds", "value": 5}])
    assert jp.spec.min_ready_seconds == 5 and jp.metadata.generation == 2
    st = apps.patch_namespaced_daemon_set_status("pyds", "default", {"status": {"numberReady": 0,
                                                                               "observedGeneration": 2}})
    assert st.status.observed_generation == 2 and st.spec.min_ready_seconds == 5
    with pytest.raises(ApiException) as e:
        body = apps.read_namespaced_daemon_set("pyds", "default")
        body.metadata.resource_version = "1"
        apps.replace_namespaced_daemon_set("pyds", "default", body)
    assert e.value.status == 409
    apps.delete_namespaced_daemon_set("pyds", "default")
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_daemon_set("pyds", "default")
    assert e.value.status == 404


def test_core_kinds(api):
    core = client.CoreV1Api(api)
    node = core.create_node({"metadata": {"name": "pynode", "labels": {"zone": "a"}}})
    assert node.metadata.name == "pynode"
    core.patch_node("pynode", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
    assert core.read_node("pynode").spec.taints[0].key == "k"
    nodes = core.list_node(field_selector="metadata.name=pynode")
    assert len(nodes.items) == 1
    pod = core.create_namespaced_pod("default", {"metadata": {"name": "pypod", "labels": {"a": "b"}},
                                                 "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
    assert pod.status.phase == "Pending" and pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert [p.metadata.name for p in core.list_namespaced_pod("default", label_selector="a in (b)").items] == \
        ["pypod"]
    assert [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector="status.phase=Pending",
                                                                     label_selector="a=b").items] == ["pypod"]
    ev = core.create_namespaced_event("default", {"metadata": {"name": "pyev"}, "reason": "R", "message": "m",
                                                  "involvedObject": {"kind": "Pod", "name": "pypod",
                                                                     "namespace": "default"}})
    assert ev.reason == "R"
    core.delete_namespaced_pod("pypod", "default")
    core.delete_namespaced_event("pyev", "default")
    core.delete_node("pynode")


def test_other_kinds(api):
    coord = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease("default", {"metadata": {"name": "pylease"},
                                                      "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}})
    assert lease.spec.holder_identity == "a"
    lease = coord.patch_namespaced_lease("pylease", "default", {"spec": {"holderIdentity": "b"}})
    assert lease.spec.holder_identity == "b"
    coord.delete_namespaced_lease("pylease", "default")
    apps = client.AppsV1Api(api)
    cr = apps.create_namespaced_controller_revision("default", {"metadata": {"name": "pycr"}, "revision": 1,
                                                                "data": {"x": 1}})
    assert cr.revision == 1
    apps.delete_namespaced_controller_revision("pycr", "default")
    sts = apps.create_namespaced_stateful_set("default", {
        "metadata": {"name": "pysts"},
        "spec": {"serviceName": "pysts", "selector": {"matchLabels": {"a": "s"}},
                 "template": {"metadata": {"labels": {"a": "s"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    assert sts.spec.replicas == 1
    scale = apps.patch_namespaced_stateful_set_scale("pysts", "default", {"spec": {"replicas": 0}})
    assert scale.spec.replicas == 0
    apps.delete_namespaced_stateful_set("pysts", "default")
    events = client.EventsV1Api(api)
    e = events.create_namespaced_event("default", {"metadata": {"name": "pyev2"}, "eventTime":
                                                   "2025-01-01T00:00:00.000000Z", "reportingController": "x/y",
                                                   "reportingInstance": "i", "action": "A", "reason": "R",
                                                   "type": "Normal", "regarding": {"kind": "Pod", "name": "p"}})
    assert e.reason == "R"
    events.delete_namespaced_event("pyev2", "default")


def test_watch(api):
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    seen: list[tuple[str, str]] = []

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=20,
                           label_selector="w=1"):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    core.create_namespaced_config_map("default", {"metadata": {"name": "wcm", "labels": {"w": "1"}},
                                                  "data": {"a": "1"}})
    core.patch_namespaced_config_map("wcm", "default", {"data": {"a": "2"}})
    core.delete_namespaced_config_map("wcm", "default")
    t.join(60)
    assert seen == [("ADDED", "wcm"), ("MODIFIED", "wcm"), ("DELETED", "wcm")]
