"""Unit and property tests for kubeling.apiserver.patch and kubeling.api.patchmeta (no server)."""

from __future__ import annotations

import copy
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeling.api import patchmeta
from kubeling.api.errors import StatusError
from kubeling.apiserver.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
)

DS = "io.k8s.api.apps.v1.DaemonSet"
DEPLOY = "io.k8s.api.apps.v1.Deployment"
STS = "io.k8s.api.apps.v1.StatefulSet"
POD = "io.k8s.api.core.v1.Pod"
NODE = "io.k8s.api.core.v1.Node"


def smp(original: dict, patch: dict | str, ref: str = DS) -> dict:
    body = patch if isinstance(patch, str) else json.dumps(patch)
    return apply_patch(STRATEGIC_MERGE_PATCH, original, body.encode(), schema_ref=ref)


def daemonset(**spec_extra) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "fluentd", "namespace": "kube-system", "labels": {"app": "fluentd"},
                     "finalizers": ["a", "b"]},
        "spec": {
            "selector": {"matchLabels": {"app": "fluentd"}},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {
                "metadata": {"labels": {"app": "fluentd"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "a:1",
                         "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "b", "image": "b:1"},
                    ],
                    "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}},
                                {"name": "cfg", "configMap": {"name": "cfg"}}],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                },
            },
            **spec_extra,
        },
    }


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# --- patchmeta --------------------------------------------------------------

def test_meta_containers_merge_by_name():
    spec = patchmeta.node_for(POD).field("spec").node
    meta = spec.field("containers")
    assert (meta.strategy, meta.merge_key, meta.list_type) == ("merge", "name", "map")
    assert meta.node.name == "io.k8s.api.core.v1.Container"
    assert meta.node.field("ports").merge_key == "containerPort"


def test_meta_volumes_merge_and_retain_keys():
    meta = patchmeta.node_for(POD).field("spec").node.field("volumes")
    assert meta.strategy == "merge" and meta.retain_keys and meta.merge_key == "name"


def test_meta_tolerations_are_atomic():
    meta = patchmeta.node_for(POD).field("spec").node.field("tolerations")
    assert meta.strategy == "" and meta.atomic and meta.list_type == "atomic"


def test_meta_deployment_strategy_retain_keys_but_daemonset_not():
    assert patchmeta.node_for(DEPLOY).field("spec").node.field("strategy").retain_keys
    ds_strategy = patchmeta.node_for(DS).field("spec").node.field("updateStrategy")
    assert not ds_strategy.retain_keys
    assert ds_strategy.node.name == "io.k8s.api.apps.v1.DaemonSetUpdateStrategy"


def test_meta_finalizers_owner_refs_conditions():
    meta = patchmeta.node_for(NODE).field("metadata").node
    assert meta.field("finalizers").strategy == "merge" and meta.field("finalizers").merge_key == ""
    assert meta.field("ownerReferences").merge_key == "uid"
    assert patchmeta.node_for(NODE).field("status").node.field("conditions").merge_key == "type"


def test_meta_map_values_and_unknown():
    labels = patchmeta.node_for(POD).field("metadata").node.field("labels")
    assert labels.strategy == "" and labels.node.field("any-key").node is patchmeta.GENERIC
    assert patchmeta.node_for("com.example.v1.Widget") is patchmeta.GENERIC
    assert not patchmeta.supports_strategic_merge("com.example.v1.Widget")
    assert not patchmeta.supports_strategic_merge(None)
    assert patchmeta.supports_strategic_merge(DS)
    assert patchmeta.node_for(POD).field("nonexistent").node is patchmeta.GENERIC


def test_meta_definition_name_and_cache():
    assert patchmeta.definition_name("apps", "v1", "DaemonSet") == DS
    assert patchmeta.definition_name("", "v1", "Node") == NODE
    assert patchmeta.node_for(DS) is patchmeta.node_for(DS)
    spec = patchmeta.node_for(DS).field("spec")
    assert spec is patchmeta.node_for(DS).field("spec")


def test_meta_pdb_selector_replace():
    meta = patchmeta.node_for("io.k8s.api.policy.v1.PodDisruptionBudget").field("spec").node.field("selector")
    assert meta.strategy == "replace"


# --- content types ------------------------------------------------------------

def test_unsupported_media_type_is_415():
    with pytest.raises(StatusError) as e:
        apply_patch("application/json", {}, b"{}", schema_ref=DS)
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"


def test_strategic_on_custom_resource_is_415():
    with pytest.raises(StatusError) as e:
        apply_patch(STRATEGIC_MERGE_PATCH, {"spec": {}}, b"{}", schema_ref=None)
    assert e.value.code == 415
    assert "strategic" not in e.value.message


def test_content_type_parameters_ignored():
    out = apply_patch(MERGE_PATCH + "; charset=utf-8", {"a": 1}, b'{"b":2}')
    assert out == {"a": 1, "b": 2}


# --- JSON patch ---------------------------------------------------------------

def test_json_patch_ops():
    obj = {"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    ops = [{"op": "add", "path": "/metadata/labels/b", "value": "2"},
           {"op": "remove", "path": "/metadata/labels/a"},
           {"op": "replace", "path": "/spec/list/0", "value": 9},
           {"op": "add", "path": "/spec/list/-", "value": 3},
           {"op": "test", "path": "/metadata/name", "value": "x"}]
    out = apply_patch(JSON_PATCH, obj, orjson.dumps(ops))
    assert out == {"metadata": {"name": "x", "labels": {"b": "2"}}, "spec": {"list": [9, 2, 3]}}
    assert obj["metadata"]["labels"] == {"a": "1"}  # pure


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/name", "value": "y"}],
    [{"op": "remove", "path": "/metadata/missing"}],
    [{"op": "replace", "path": "/spec/x/y", "value": 1}],
    [{"op": "frobnicate", "path": "/a"}],
    [{"path": "/a"}],
])
def test_json_patch_that_does_not_apply_is_422(ops):
    with pytest.raises(StatusError) as e:
        apply_patch(JSON_PATCH, {"metadata": {"name": "x"}}, orjson.dumps(ops))
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert e.value.message == "the server rejected our request due to an error in our request"
    assert e.value.details["causes"][0]["reason"] == "UnexpectedServerResponse"


@pytest.mark.parametrize("body", [b"", b"{not json", b'{"op":"add"}', b'["add"]'])
def test_json_patch_malformed_is_400(body):
    with pytest.raises(StatusError) as e:
        apply_patch(JSON_PATCH, {}, body)
    assert e.value.code == 400 and e.value.reason == "BadRequest"


def test_json_patch_too_many_operations_413():
    ops = [{"op": "test", "path": "/a", "value": 1}] * 10001
    with pytest.raises(StatusError) as e:
        apply_patch(JSON_PATCH, {"a": 1}, orjson.dumps(ops))
    assert e.value.code == 413


def test_json_patch_result_not_object_is_422():
    with pytest.raises(StatusError) as e:
        apply_patch(JSON_PATCH, {"a": 1}, b'[{"op":"replace","path":"","value":[1]}]')
    assert e.value.code == 422 and e.value.reason == "Invalid"


# --- JSON merge patch ---------------------------------------------------------

def test_merge_patch_null_deletes_and_lists_replace():
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2], "keep": True}}
    out = apply_patch(MERGE_PATCH, obj, b'{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"list":[3]}}')
    assert out == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3], "keep": True}}
    assert obj["metadata"]["labels"] == {"a": "1", "b": "2"}


def test_merge_patch_replaces_non_object_with_object():
    out = apply_patch(MERGE_PATCH, {"a": "x"}, b'{"a":{"b":1,"c":null}}')
    assert out == {"a": {"b": 1}}


@pytest.mark.parametrize("body", [b"", b"{", b"null"])
def test_merge_patch_malformed_400(body):
    with pytest.raises(StatusError) as e:
        apply_patch(MERGE_PATCH, {}, body)
    assert e.value.code == 400 and e.value.message == "Invalid JSON Patch"


def test_merge_patch_array_is_422():
    with pytest.raises(StatusError) as e:
        apply_patch(MERGE_PATCH, {}, b"[1]")
    assert e.value.code == 422


def test_merge_patch_scale():
    scale = {"kind": "Scale", "spec": {"replicas": 1}, "status": {"replicas": 1}}
    out = apply_patch(MERGE_PATCH, scale, b'{"spec":{"replicas":3}}',
                      schema_ref="io.k8s.api.autoscaling.v1.Scale")
    assert out["spec"] == {"replicas": 3}


# --- strategic merge patch ----------------------------------------------------

def test_smp_set_image_with_set_element_order():
    ds = daemonset()
    out = smp(ds, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"image": "a:2", "name": "a"}]}}}})
    assert [c["image"] for c in containers(out)] == ["a:2", "b:1"]
    assert containers(out)[0]["env"] == containers(ds)[0]["env"]
    assert containers(ds)[0]["image"] == "a:1"  # pure


def test_smp_kubectl_set_image_without_order():
    out = smp(daemonset(), {"spec": {"template": {"spec": {"containers": [{"image": "b:9", "name": "b"}]}}}})
    assert [(c["name"], c["image"]) for c in containers(out)] == [("a", "a:1"), ("b", "b:9")]


def test_smp_set_element_order_reorders():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}}})
    assert [c["name"] for c in containers(out)] == ["b", "a"]


def test_smp_apply_adds_container_in_order():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}, {"name": "b"}],
        "containers": [{"image": "c:1", "name": "c"}]}}}})
    assert [c["name"] for c in containers(out)] == ["a", "c", "b"]


def test_smp_new_item_without_order_goes_first():
    # upstream's mergeSortedSlice puts patch items the live list lacks before server-only ones
    out = smp(daemonset(), {"spec": {"template": {"spec": {"containers": [{"image": "c:1", "name": "c"}]}}}})
    assert [c["name"] for c in containers(out)] == ["c", "a", "b"]


def test_smp_delete_container_directive():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"$patch": "delete", "name": "b"}]}}}})
    assert [c["name"] for c in containers(out)] == ["a"]


def test_smp_delete_directive_without_merge_key_500():
    with pytest.raises(StatusError) as e:
        smp(daemonset(), {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}})
    assert e.value.code == 500 and "does not contain declared merge key: name" in e.value.message


def test_smp_list_item_without_merge_key_500():
    with pytest.raises(StatusError) as e:
        smp(daemonset(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
    assert e.value.code == 500
    assert e.value.message == "map: map[image:x] does not contain declared merge key: name"


def test_smp_replace_list_directive():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "containers": [{"name": "z", "image": "z:1"}, {"$patch": "replace"}]}}}})
    assert containers(out) == [{"name": "z", "image": "z:1"}]


def test_smp_merge_list_directive_rejected():
    with pytest.raises(StatusError) as e:
        smp(daemonset(), {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}})
    assert e.value.message == "merging lists cannot yet be specified in the patch"


def test_smp_nested_env_merge_by_name():
    out = smp(daemonset(), {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "22"}, {"name": "X", "$patch": "delete"}]}]}}}})
    assert containers(out)[0]["env"] == [{"name": "Y", "value": "22"}]


def test_smp_ports_by_container_port():
    out = smp(daemonset(), {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443}]}]}}}})
    ports = containers(out)[0]["ports"]
    assert {"containerPort": 80, "protocol": "TCP", "hostPort": 8080} in ports
    assert {"containerPort": 443} in ports and len(ports) == 2


def test_smp_tolerations_replaced():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "tolerations": [{"key": "k2", "operator": "Exists"}]}}}})
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_smp_maps_merge_and_null_deletes():
    out = smp(daemonset(), {"metadata": {"labels": {"app": None, "tier": "x"},
                                         "annotations": {"n": "1"}, "missing": None}})
    assert out["metadata"]["labels"] == {"tier": "x"}
    assert out["metadata"]["annotations"] == {"n": "1"}
    assert "missing" not in out["metadata"]


def test_smp_statefulset_partition():
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "mysql"},
           "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                                                      "rollingUpdate": {"partition": 0}}}}
    out = smp(sts, '{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}', STS)
    assert out["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    assert out["spec"]["replicas"] == 3


def test_smp_node_conditions_by_type():
    node = {"kind": "Node", "metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False", "reason": "Boot"}]}}
    out = smp(node, {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"},
                                               {"type": "DiskPressure", "status": "False"}]}}, NODE)
    conds = {c["type"]: c for c in out["status"]["conditions"]}
    assert conds["Ready"] == {"type": "Ready", "status": "True", "reason": "KubeletReady"}
    assert conds["MemoryPressure"]["status"] == "False" and "DiskPressure" in conds


def test_smp_node_status_with_set_element_order():
    node = {"kind": "Node", "metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}]}}
    out = smp(node, {"status": {"$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
                                "conditions": [{"type": "Ready", "status": "True"}]}}, NODE)
    assert out["status"]["conditions"] == [{"type": "MemoryPressure", "status": "False"},
                                           {"type": "Ready", "status": "True"}]


def test_smp_retain_keys_daemonset_on_delete():
    out = smp(daemonset(), {"spec": {"updateStrategy": {"$retainKeys": ["type"], "type": "OnDelete"}}})
    assert out["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_smp_kubectl_apply_drops_rolling_update_with_null():
    out = smp(daemonset(), {"spec": {"updateStrategy": {"rollingUpdate": None, "type": "OnDelete"}}})
    assert out["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_smp_daemonset_update_strategy_has_no_retain_keys_upstream():
    # DaemonSetUpdateStrategy carries no patchStrategy in v1.32: a plain patch keeps rollingUpdate
    out = smp(daemonset(), {"spec": {"updateStrategy": {"type": "OnDelete"}}})
    assert out["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_smp_deployment_strategy_retain_keys():
    dep = {"kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxSurge": "25%"}}}}
    out = smp(dep, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_rejects_unlisted_key():
    with pytest.raises(StatusError) as e:
        smp(daemonset(), {"spec": {"updateStrategy": {"$retainKeys": ["type"], "type": "OnDelete",
                                                      "rollingUpdate": {"maxUnavailable": 2}}}})
    assert e.value.code == 400 and e.value.message == "invalid patch format of retainKeys"


def test_smp_volumes_retain_keys_switch_source():
    out = smp(daemonset(), {"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "logs"}, {"name": "cfg"}],
        "volumes": [{"$retainKeys": ["emptyDir", "name"], "emptyDir": {}, "name": "logs"}]}}}})
    assert out["spec"]["template"]["spec"]["volumes"][0] == {"name": "logs", "emptyDir": {}}
    assert out["spec"]["template"]["spec"]["volumes"][1]["name"] == "cfg"


def test_smp_finalizers_set_union_and_delete():
    out = smp(daemonset(), {"metadata": {"finalizers": ["c", "a"]}})
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"] and len(out["metadata"]["finalizers"]) == 3
    out = smp(daemonset(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(daemonset(), {"metadata": {"$setElementOrder/finalizers": ["b", "c"],
                                         "$deleteFromPrimitiveList/finalizers": ["a"],
                                         "finalizers": ["c"]}})
    assert out["metadata"]["finalizers"] == ["b", "c"]


def test_smp_empty_merge_list_is_noop_null_clears():
    assert smp(daemonset(), {"metadata": {"finalizers": []}})["metadata"]["finalizers"] == ["a", "b"]
    assert "finalizers" not in smp(daemonset(), {"metadata": {"finalizers": None}})["metadata"]


def test_smp_owner_references_by_uid():
    obj = {"metadata": {"ownerReferences": [{"uid": "1", "name": "x", "kind": "DaemonSet"}]}}
    out = smp(obj, {"metadata": {"ownerReferences": [{"uid": "2", "name": "y", "kind": "Node"},
                                                     {"uid": "1", "$patch": "delete"}]}}, POD)
    assert out["metadata"]["ownerReferences"] == [{"uid": "2", "name": "y", "kind": "Node"}]


def test_smp_rollout_undo_replaces_template():
    ds = daemonset()
    old_template = {"metadata": {"labels": {"app": "fluentd"}},
                    "spec": {"containers": [{"name": "a", "image": "a:0"}]}}
    patch = {"spec": {"template": {**copy.deepcopy(old_template), "$patch": "replace"}}}
    out = smp(ds, patch)
    assert out["spec"]["template"] == old_template
    assert out["spec"]["updateStrategy"] == ds["spec"]["updateStrategy"]


def test_smp_map_delete_directive():
    out = smp(daemonset(), {"spec": {"template": {"metadata": {"$patch": "delete"}}}})
    assert out["spec"]["template"]["metadata"] == {}


def test_smp_kubectl_label_and_rollout_restart():
    out = smp(daemonset(), {"metadata": {"labels": {"env": "prod"}},
                            "spec": {"template": {"metadata": {"annotations": {
                                "kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}})
    assert out["metadata"]["labels"] == {"app": "fluentd", "env": "prod"}
    assert out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]


def test_smp_kubectl_taint_replaces_taints():
    node = {"kind": "Node", "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    out = smp(node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}, NODE)
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]


def test_smp_new_field_strips_directives():
    ds = daemonset()
    del ds["spec"]["template"]["spec"]["volumes"]
    out = smp(ds, {"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "v"}],
        "volumes": [{"$retainKeys": ["emptyDir", "name"], "name": "v", "emptyDir": {}}]}}}})
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


def test_smp_kubectl_apply_three_way_patch():
    ds = daemonset()
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"$setElementOrder/env": [{"name": "X"}], "name": "a",
                            "env": [{"name": "Y", "$patch": "delete"}], "image": "a:3"}],
        }}},
    }
    out = smp(ds, patch)
    assert containers(out)[0]["env"] == [{"name": "X", "value": "1"}]
    assert containers(out)[0]["image"] == "a:3"
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == "{}\n"


def test_smp_set_element_order_mismatch_is_error():
    with pytest.raises(StatusError) as e:
        smp(daemonset(), {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "b", "image": "x"}]}}}})
    assert e.value.code == 500 and "doesn't match" in e.value.message


@pytest.mark.parametrize("patch,code", [
    ('{"metadata":{"$retainKeys":"x"}}', 400),
    ('{"metadata":{"$setElementOrder":[]}}', 400),
    ('{"metadata":{"$deleteFromPrimitiveList":["a"]}}', 400),
    ('{"metadata":{"finalizers":[["a"]]}}', 500),
    ('{"metadata":{"finalizers":["a", 1]}}', 500),
    ('{"$patch":"bogus"}', 500),
    ("[1,2]", 400),
    ("{", 400),
    ("", 400),
])
def test_smp_bad_patches(patch, code):
    with pytest.raises(StatusError) as e:
        smp(daemonset(), patch)
    assert e.value.code == code


def test_smp_list_of_lists_is_422():
    with pytest.raises(StatusError) as e:
        smp({"metadata": {"finalizers": []}}, {"metadata": {"finalizers": [["a"]]}}, POD)
    assert e.value.code == 422 and e.value.details["causes"][0]["message"] == "lists of lists are not supported"


def test_smp_null_body_is_noop_and_type_change_replaces():
    assert smp(daemonset(), "null") == daemonset()
    out = smp(daemonset(), {"spec": {"template": {"spec": {"containers": "oops"}}}})
    assert containers(out) == "oops"  # rejected later by validation, as upstream's decode would


def test_smp_bool_vs_int_merge_keys_differ():
    obj = {"status": {"conditions": [{"type": 1, "status": "a"}]}}
    out = smp(obj, {"status": {"conditions": [{"type": True, "status": "b"}]}}, NODE)
    assert len(out["status"]["conditions"]) == 2


# --- server-side apply (approximation) ----------------------------------------

def test_apply_yaml_merges_into_live():
    ds = daemonset()
    body = b"""
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd
  labels: {tier: logging}
spec:
  template:
    spec:
      containers:
      - name: a
        image: a:5
      tolerations:
      - key: k9
        operator: Exists
"""
    out = apply_patch(APPLY_PATCH, ds, body, schema_ref=DS)
    assert [(c["name"], c["image"]) for c in containers(out)] == [("a", "a:5"), ("b", "b:1")]
    assert out["metadata"]["labels"] == {"app": "fluentd", "tier": "logging"}
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "k9", "operator": "Exists"}]


def test_apply_yaml_create_and_timestamps_stay_strings():
    out = apply_patch(APPLY_PATCH, {}, b"kind: ConfigMap\ndata:\n  when: 2024-01-01\n",
                      schema_ref="io.k8s.api.core.v1.ConfigMap")
    assert out == {"kind": "ConfigMap", "data": {"when": "2024-01-01"}}


@pytest.mark.parametrize("body", [b"- a\n- b\n", b"a: [\n", b"just a string"])
def test_apply_yaml_bad_body_400(body):
    with pytest.raises(StatusError) as e:
        apply_patch(APPLY_PATCH, {}, body, schema_ref=DS)
    assert e.value.code == 400


# --- property tests -----------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)
keys = st.sampled_from(["metadata", "spec", "status", "template", "containers", "name", "image", "env",
                        "labels", "finalizers", "updateStrategy", "rollingUpdate", "type", "volumes",
                        "$patch", "$retainKeys", "$setElementOrder/containers", "conditions",
                        "$deleteFromPrimitiveList/finalizers", "$setElementOrder/finalizers", "a", ""])
k8sish = st.recursive(json_scalars | st.sampled_from(["delete", "replace", "merge", "a", "b"]),
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(keys, inner, max_size=5)), max_leaves=30)
objects = st.dictionaries(keys, k8sish, max_size=5)
pointer = st.lists(st.sampled_from(["metadata", "spec", "0", "1", "-", "a", "name", "~1", ""]), max_size=4).map(
    lambda parts: "".join("/" + p for p in parts))
ops = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])},
    optional={"path": st.one_of(pointer, json_values), "from": pointer, "value": json_values}), max_size=5)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]


def _only_status_errors(patch_type: str, original: dict, body: bytes, ref: str | None = DS) -> None:
    before = copy.deepcopy(original)
    try:
        out = apply_patch(patch_type, original, body, schema_ref=ref)
    except StatusError as e:
        assert e.reason != "InternalError", e.message  # our own bug, not an upstream-style error
        assert 400 <= e.code < 600
    else:
        assert isinstance(out, dict)
        orjson.dumps(out)
    assert original == before  # never changes the caller's object


@PROPERTY
@given(patch_type=st.sampled_from(ALL_TYPES), original=objects, body=st.binary(max_size=64))
def test_random_bytes_only_status_errors(patch_type, original, body):
    _only_status_errors(patch_type, original, body)


@PROPERTY
@given(original=objects, patch=ops)
def test_random_json_patches_only_status_errors(original, patch):
    _only_status_errors(JSON_PATCH, original, orjson.dumps(patch))


@PROPERTY
@given(patch_type=st.sampled_from(ALL_TYPES), original=objects, patch=st.one_of(objects, k8sish),
       ref=st.sampled_from([DS, POD, NODE, None]))
def test_random_json_bodies_only_status_errors(patch_type, original, patch, ref):
    _only_status_errors(patch_type, original, orjson.dumps(patch), ref)


@PROPERTY
@given(original=st.dictionaries(st.text(max_size=4), json_values, max_size=5),
       patch=st.dictionaries(st.text(max_size=4), json_values, max_size=5))
def test_merge_patch_matches_rfc7386_properties(original, patch):
    out = apply_patch(MERGE_PATCH, original, orjson.dumps(patch))
    for key, value in patch.items():
        if value is None:
            assert key not in out
        elif not isinstance(value, dict):
            assert out[key] == value
    for key in original:
        if key not in patch:
            assert out[key] == original[key]
    # applying the same merge patch twice changes nothing more (idempotent)
    assert apply_patch(MERGE_PATCH, out, orjson.dumps(patch)) == out


@PROPERTY
@given(names=st.lists(st.sampled_from("abcdef"), unique=True, max_size=5),
       updates=st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=4))
def test_smp_container_merge_keeps_one_item_per_name(names, updates):
    pod = {"spec": {"containers": [{"name": n, "image": f"{n}:1"} for n in names]}}
    patch = {"spec": {"containers": [{"name": n, "image": f"{n}:2"} for n in updates]}}
    out = smp(pod, patch, POD)
    got = {c["name"]: c["image"] for c in out["spec"]["containers"]}
    assert len(got) == len(out["spec"]["containers"])
    assert set(got) == set(names) | set(updates)
    for n in updates:
        assert got[n] == f"{n}:2"
    for n in set(names) - set(updates):
        assert got[n] == f"{n}:1"
