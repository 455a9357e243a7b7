"""Field-error messages and paths, table-driven against upstream's wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeling.api import schema
from kubeling.api.defaults import apply_defaults
from kubeling.api.errors import invalid_error
from kubeling.api.strategies import POD_UPDATE_MSG, strategy_for
from kubeling.api.validation.pod import pod_qos_class

DS = ("apps", "v1", "DaemonSet")
POD = ("", "v1", "Pod")


def ds() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}


def pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def _set(obj: dict, path: str, value: Any) -> dict:
    keys = path.split(".")
    cur: Any = obj
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    if isinstance(cur, list):
        cur[int(keys[-1])] = value
    else:
        cur[keys[-1]] = value
    return obj


def _messages(res, obj) -> list[str]:
    apply_defaults(res, obj)
    s = strategy_for(res)
    s.prepare_for_create(obj)
    return [str(e) for e in s.validate(obj)]


SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
             "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
         "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")

DS_CASES = [
    ("selector mismatch", "spec.template.metadata.labels", {"app": "y"},
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: '
     "`selector` does not match template `labels`"),
    ("restartPolicy", "spec.template.spec.restartPolicy", "OnFailure",
     'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"'),
    ("bad name", "metadata.name", "Foo", f'metadata.name: Invalid value: "Foo": {SUBDOMAIN}'),
    ("maxUnavailable 0", "spec.updateStrategy", {"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
     'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, '
     'StrVal:""}: may not be 0 when maxSurge is 0'),
    ("maxUnavailable 0%", "spec.updateStrategy", {"type": "RollingUpdate",
                                                  "rollingUpdate": {"maxUnavailable": "0%", "maxSurge": 0}},
     'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
     'StrVal:"0%"}: may not be 0 when maxSurge is 0'),
    ("bad percent", "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "x"}},
     "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"x\": a valid percent string must be a "
     "numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
    ("over 100%", "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "101%"}},
     'spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "101%": must not be greater than 100%'),
    ("strategy type", "spec.updateStrategy", {"type": "Foo"},
     'spec.updateStrategy: Unsupported value: "Foo": supported values: "RollingUpdate", "OnDelete"'),
    ("minReadySeconds", "spec.minReadySeconds", -1,
     "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"),
    ("revisionHistoryLimit", "spec.revisionHistoryLimit", -2,
     "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0"),
    ("activeDeadlineSeconds", "spec.template.spec.activeDeadlineSeconds", 5,
     "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"),
    ("no selector", "spec.selector", None, "spec.selector: Required value"),
    ("selector operator", "spec.selector", {"matchExpressions": [{"key": "app", "operator": "Foo"}]},
     'spec.selector.matchExpressions[0].operator: Invalid value: "Foo": not a valid selector operator'),
    ("selector values", "spec.selector", {"matchExpressions": [{"key": "app", "operator": "In"}]},
     "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    ("bad label value", "metadata.labels", {"a": "-bad"},
     'metadata.labels: Invalid value: "-bad": a valid label must be an empty string or consist of alphanumeric '
     "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
     "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ("bad label key", "metadata.labels", {"a b": "x"},
     'metadata.labels: Invalid value: "a b": name part must consist of alphanumeric characters, \'-\', \'_\' or '
     "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
     "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    ("no name", "metadata.name", "", "metadata.name: Required value: name or generateName is required"),
    ("no namespace", "metadata.namespace", "", "metadata.namespace: Required value"),
    ("annotations size", "metadata.annotations", {"a": "x" * (256 * 1024)},
     "metadata.annotations: Too long: must have at most 262144 bytes"),
]


@pytest.mark.parametrize(("path", "value", "message"), [c[1:] for c in DS_CASES], ids=[c[0] for c in DS_CASES])
def test_daemonset_messages(path, value, message):
    obj = ds()
    if value is None:
        parent, _, key = path.rpartition(".")
        cur = obj
        for k in parent.split("."):
            cur = cur[k]
        del cur[key]
    else:
        _set(obj, path, value)
    assert message in _messages(DS, obj)


POD_CASES = [
    ("no containers", "spec.containers", [], "spec.containers: Required value"),
    ("no image", "spec.containers.0.image", "", "spec.containers[0].image: Required value"),
    ("restartPolicy", "spec.restartPolicy", "Sometimes",
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("dnsPolicy", "spec.dnsPolicy", "Foo",
     'spec.dnsPolicy: Unsupported value: "Foo": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
     '"Default", "None"'),
    ("duplicate container", "spec.containers", [{"name": "c", "image": "a"}, {"name": "c", "image": "b"}],
     'spec.containers[1].name: Duplicate value: "c"'),
    ("bad container name", "spec.containers.0.name", "C_1",
     f'spec.containers[0].name: Invalid value: "C_1": {LABEL}'),
    ("port range", "spec.containers.0.ports", [{"containerPort": 70000}],
     "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("port protocol", "spec.containers.0.ports", [{"containerPort": 80, "protocol": "tcp"}],
     'spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"'),
    ("requests over limits", "spec.containers.0.resources",
     {"limits": {"cpu": "1"}, "requests": {"cpu": "2000m"}},
     'spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ("mount not found", "spec.containers.0.volumeMounts", [{"name": "nope", "mountPath": "/x"}],
     'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
    ("duplicate volume", "spec.volumes", [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
     'spec.volumes[1].name: Duplicate value: "v"'),
    ("two volume types", "spec.volumes", [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}],
     "spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type"),
    ("hostPath type", "spec.volumes", [{"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}],
     'spec.volumes[0].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", '
     '"CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"'),
    ("toleration exists value", "spec.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}],
     "value must be empty when `operator` is 'Exists'"),
    ("toleration effect", "spec.tolerations", [{"key": "k", "operator": "Exists", "effect": "Never"}],
     'spec.tolerations[0].effect: Unsupported value: "Never": supported values: "NoSchedule", '
     '"PreferNoSchedule", "NoExecute"'),
    ("toleration no key", "spec.tolerations", [{"operator": "Equal", "value": "v"}],
     'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which '
     'means "match all values and all keys"'),
    ("nodeSelectorTerms empty", "spec.affinity",
     {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required "
     "value: must have at least one node selector term"),
    ("matchFields key", "spec.affinity",
     {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
         {"matchFields": [{"key": "metadata.labels", "operator": "In", "values": ["a"]}]}]}}},
     'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]'
     '.matchFields[0].key: Invalid value: "metadata.labels": not a valid field selector key'),
    ("hostNetwork port", "spec", {"hostNetwork": True, "containers": [
        {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 81}]}]},
     "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true"),
    ("probe handler", "spec.containers.0.livenessProbe", {"periodSeconds": 5},
     "spec.containers[0].livenessProbe: Required value: must specify a handler type"),
    ("liveness success", "spec.containers.0.livenessProbe", {"exec": {"command": ["x"]}, "successThreshold": 2},
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ("dnsPolicy None", "spec.dnsPolicy", "None",
     "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
]


@pytest.mark.parametrize(("path", "value", "message"), [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_messages(path, value, message):
    obj = _set(pod(), path, value)
    msgs = _messages(POD, obj)
    assert any(message in m for m in msgs), msgs


OTHER_CASES = [
    (("", "v1", "Namespace"), {"metadata": {"name": "a.b"}}, f'metadata.name: Invalid value: "a.b": {LABEL}'),
    (("", "v1", "Service"), {"metadata": {"name": "1svc", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}},
     'metadata.name: Invalid value: "1svc": a DNS-1035 label must consist of lower case alphanumeric characters '
     "or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
     "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
    (("", "v1", "Service"), {"metadata": {"name": "s", "namespace": "d"}, "spec": {}}, "spec.ports: Required value"),
    (("", "v1", "Node"), {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}},
     'spec.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", '
     '"NoExecute"'),
    (("", "v1", "Node"), {"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0"]}},
     'spec.podCIDRs[0]: Invalid value: "10.0.0.0": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'),
    (("", "v1", "Node"), {"metadata": {"name": "n", "namespace": "x"}},
     "metadata.namespace: Forbidden: not allowed on this type"),
    (("", "v1", "Node"), {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"},
                                                                         {"key": "k", "effect": "NoSchedule"}]}},
     "taints must be unique by key and effect pair"),
    (("", "v1", "ConfigMap"), {"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x"}},
     "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or "
     "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
    (("", "v1", "Secret"), {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"},
     "data[tls.crt]: Required value"),
    (("coordination.k8s.io", "v1", "Lease"), {"metadata": {"name": "l", "namespace": "d"},
                                              "spec": {"leaseDurationSeconds": 0}},
     "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
    (("", "v1", "Event"), {"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"namespace": "b"}},
     'involvedObject.namespace: Invalid value: "b": does not match event.namespace'),
    (("apps", "v1", "StatefulSet"), {"metadata": {"name": "s", "namespace": "d"},
                                     "spec": {"selector": {"matchLabels": {"a": "b"}},
                                              "podManagementPolicy": "Sometimes",
                                              "template": {"metadata": {"labels": {"a": "b"}},
                                                           "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'"),
    (("apps", "v1", "Deployment"), {"metadata": {"name": "d", "namespace": "d"},
                                    "spec": {"selector": {"matchLabels": {"a": "b"}},
                                             "template": {"metadata": {"labels": {"a": "c"}},
                                                          "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     'spec.template.metadata.labels: Invalid value: map[string]string{"a":"c"}: '
     "`selector` does not match template `labels`"),
    (("batch", "v1", "Job"), {"metadata": {"name": "j", "namespace": "d"},
                              "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}},
     'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    (("rbac.authorization.k8s.io", "v1", "ClusterRole"), {"metadata": {"name": "system:a/b"}},
     "metadata.name: Invalid value: \"system:a/b\": may not contain '/'"),
]


@pytest.mark.parametrize(("res", "obj", "message"), OTHER_CASES, ids=[f"{c[0][2]}-{i}" for i, c in enumerate(OTHER_CASES)])
def test_other_messages(res, obj, message):
    msgs = _messages(res, obj)
    assert any(message in m for m in msgs), msgs


def test_rbac_colon_names_are_valid():
    assert _messages(("rbac.authorization.k8s.io", "v1", "ClusterRole"), {"metadata": {"name": "system:node"}}) == []


# ---- schema / decoding ------------------------------------------------------------------

def test_unknown_field_strict():
    obj = ds()
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["bar"] = 2
    errors, warnings = schema.validate(DS, obj)
    # reported in document order, as the decoder meets them
    assert [str(e) for e in errors] == ['unknown field "spec.template.spec.containers[0].bar"',
                                        'unknown field "spec.foo"']
    assert warnings == []
    err = schema.decode_error(DS, errors)
    assert err.code == 400 and err.reason == "BadRequest"
    assert err.message == ('DaemonSet in version "v1" cannot be handled as a DaemonSet: strict decoding error: '
                           'unknown field "spec.template.spec.containers[0].bar", unknown field "spec.foo"')


def test_unknown_field_warn_and_ignore_prune():
    obj = ds()
    obj["spec"]["foo"] = 1
    errors, warnings = schema.validate(DS, obj, field_validation="Warn")
    assert errors == [] and warnings == ['unknown field "spec.foo"'] and "foo" not in obj["spec"]
    obj["metadata"]["Labels"] = {}
    errors, warnings = schema.validate(DS, obj, field_validation="Ignore")
    assert errors == [] and warnings == [] and "Labels" not in obj["metadata"]


@pytest.mark.parametrize(("path", "value", "message"), [
    ("spec.minReadySeconds", "5",
     "json: cannot unmarshal string into Go struct field DaemonSetSpec.spec.minReadySeconds of type int32"),
    ("spec.template.spec.containers", "x",
     "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container"),
    ("spec.template.spec.hostNetwork", "yes",
     "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.hostNetwork of type bool"),
    ("spec.template.spec.containers.0.ports", [{"containerPort": "80"}],
     "json: cannot unmarshal string into Go struct field ContainerPort.spec.template.spec.containers.ports"
     ".containerPort of type int32"),
    ("spec.template.spec.containers.0.resources", {"limits": {"cpu": "lots"}},
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("spec.updateStrategy", {"rollingUpdate": {"maxUnavailable": True}},
     "json: cannot unmarshal bool into Go value of type int32"),
    ("metadata.labels", {"a": 1},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
])
def test_wrong_type(path, value, message):
    obj = _set(ds(), path, value)
    errors, _ = schema.validate(DS, obj)
    assert [str(e) for e in errors] == [message]
    assert schema.decode_error(DS, errors).message.endswith(": " + message)


def test_int_or_string_accepts_both():
    for v in (1, "10%"):
        obj = _set(ds(), "spec.updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": v}})
        assert schema.validate(DS, obj) == ([], [])


def test_nulls_are_dropped():
    obj = ds()
    obj["spec"]["minReadySeconds"] = None
    assert schema.validate(DS, obj) == ([], []) and "minReadySeconds" not in obj["spec"]


def test_resource_object_with_schema_ref():
    class R:
        group, version, kind, schema_ref = "apps", "v1", "DaemonSet", "io.k8s.api.apps.v1.DaemonSet"
    obj = ds()
    obj["spec"]["foo"] = 1
    assert [str(e) for e in schema.validate(R(), obj)[0]] == ['unknown field "spec.foo"']


# ---- updates ----------------------------------------------------------------------------

def _created(res, obj):
    apply_defaults(res, obj)
    s = strategy_for(res)
    s.prepare_for_create(obj)
    assert s.validate(obj) == []
    return s, obj


def test_daemonset_selector_immutable():
    s, old = _created(DS, ds())
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "x", "b": "c"}}
    new["spec"]["template"]["metadata"]["labels"]["b"] = "c"
    s.prepare_for_update(new, old)
    assert [str(e) for e in s.validate_update(new, old)] == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x", "b":"c"}, '
        'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']


def test_statefulset_update_forbidden():
    res = ("apps", "v1", "StatefulSet")
    obj = {"metadata": {"name": "s", "namespace": "d"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "x",
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    s, old = _created(res, obj)
    new = copy.deepcopy(old)
    new["spec"]["serviceName"] = "y"
    assert [str(e) for e in s.validate_update(new, old)] == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    assert s.validate_update(new, old) == []


def test_pod_update_forbidden_and_image_allowed():
    s, old = _created(POD, pod())
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    assert s.validate_update(new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    msgs = [str(e) for e in s.validate_update(new, old)]
    assert msgs and msgs[0].startswith("spec: Forbidden: pod updates may not change fields other than "
                                       "`spec.containers[*].image`")


def test_name_immutable_and_invalid_error_message():
    s, old = _created(DS, ds())
    new = copy.deepcopy(old)
    new["metadata"]["name"] = "y"
    errs = s.validate_update(new, old)
    assert 'metadata.name: Invalid value: "y": field is immutable' in [str(e) for e in errs]
    obj = _set(ds(), "spec.template.spec.restartPolicy", "OnFailure")
    apply_defaults(DS, obj)
    err = invalid_error("apps", "DaemonSet", "x", s.validate(obj))
    assert err.code == 422
    assert err.message == ('DaemonSet.apps "x" is invalid: spec.template.spec.restartPolicy: Unsupported value: '
                           '"OnFailure": supported values: "Always"')


@pytest.mark.parametrize(("resources", "qos"), [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos(resources, qos):
    p = {"spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}}
    assert pod_qos_class(p) == qos


# ---- update shortcuts: what an update leaves as stored is not validated again ----------------

def _running_pod() -> tuple[Any, dict[str, Any]]:
    s, old = _created(POD, pod())
    old["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2024-01-01T00:00:00Z")
    old["spec"]["nodeName"] = "node-1"
    old["spec"]["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
    old["status"] = {"phase": "Running"}
    assert s.validate(old) == []
    return s, old


def test_pod_update_unchanged_spec_and_metadata_passes():
    s, old = _running_pod()
    assert s.validate_update(copy.deepcopy(old), old) == []
    shared = copy.deepcopy(old)
    shared["spec"] = old["spec"]  # as a status write leaves it
    assert s.validate_update(shared, old) == []


def test_pod_update_spec_change_still_fully_validated():
    s, old = _running_pod()
    new = copy.deepcopy(old)  # metadata unchanged: only the spec's rules can say something
    new["spec"]["containers"][0]["image"] = ""
    new["spec"]["tolerations"].append({"key": "a/b/c", "operator": "Exists"})
    assert [str(e) for e in s.validate_update(new, old)] == [
        "spec.containers[0].image: Required value",
        'spec.tolerations[1].key: Invalid value: "a/b/c": a qualified name must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    new = copy.deepcopy(old)
    new["spec"]["restartPolicy"] = "Sometimes"
    assert [str(e) for e in s.validate_update(new, old)] == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        "spec: Forbidden: " + POD_UPDATE_MSG]


def test_pod_update_metadata_change_validated_with_spec_unchanged():
    s, old = _running_pod()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"app": "bad value"}
    new["metadata"]["resourceVersion"] = "6"
    msgs = [str(e) for e in s.validate_update(new, old)]
    assert len(msgs) == 1 and msgs[0].startswith('metadata.labels: Invalid value: "bad value": a valid label must')
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "u-2"
    assert [str(e) for e in s.validate_update(new, old)] == ['metadata.uid: Invalid value: "u-2": field is immutable']
    new = copy.deepcopy(old)
    del new["metadata"]["resourceVersion"]  # a PUT without one: the same metadata
    assert s.validate_update(new, old) == []


def test_pod_status_update_with_invalid_status_rejected():
    s, old = _running_pod()
    ss = strategy_for(POD, "status")
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Bogus"}
    ss.prepare_for_update(new, old)
    assert [str(e) for e in ss.validate_update(new, old)] == [
        'status.phase: Unsupported value: "Bogus": supported values: "Pending", "Running", "Succeeded", '
        '"Failed", "Unknown"']
    new["status"] = {"phase": "Succeeded"}
    assert ss.validate_update(new, old) == []


def test_daemonset_update_template_change_validated():
    s, old = _created(DS, ds())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert [str(e) for e in s.validate_update(new, old)] == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']
    assert s.validate_update(copy.deepcopy(old), old) == []


def test_lease_renewal_validated():
    res = ("coordination.k8s.io", "v1", "Lease")
    s, old = _created(res, {"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}})
    new = copy.deepcopy(old)
    new["spec"]["renewTime"] = "2024-01-01T00:00:10.000000Z"
    assert s.validate_update(new, old) == []
    new["spec"]["leaseDurationSeconds"] = 0
    new["spec"]["leaseTransitions"] = -1
    assert [str(e) for e in s.validate_update(new, old)] == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]


# ---- first passes: each accepts only what the full check accepts, and leaves its errors to it -------

DS_POD_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]}}}


def test_daemonset_pod_validates_clean():
    obj = pod()
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "u",
                                           "controller": True, "blockOwnerDeletion": True}]
    obj["spec"]["affinity"] = copy.deepcopy(DS_POD_AFFINITY)
    obj["spec"]["volumes"] = [{"name": "kube-api-access-x1y2z", "projected": {"defaultMode": 420, "sources": []}}]
    obj["spec"]["containers"][0]["volumeMounts"] = [{"name": "kube-api-access-x1y2z", "mountPath": "/var/run"}]
    assert _messages(POD, obj) == []


@pytest.mark.parametrize(("path", "value", "message"), [
    ("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}]}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]"
     ".values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"),
    ("spec.affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1", "2"]}]}]}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
    ("metadata.ownerReferences", [{"apiVersion": "v1", "kind": "K", "name": "a", "uid": "1", "controller": True},
                                  {"apiVersion": "v1", "kind": "K", "name": "b", "uid": "2", "controller": True}],
     'metadata.ownerReferences: Invalid value: []v1.OwnerReference{...}: Only one reference can have Controller '
     'set to true. Found "true" in references for K/a, K/b'),
    ("metadata.ownerReferences", [{"apiVersion": "v1", "kind": "K", "name": "a"}],
     'metadata.ownerReferences[0].uid: Invalid value: "": uid must not be empty'),
    ("spec.tolerations", [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                          {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}],
     "spec.tolerations[1].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
     "`tolerationSeconds` is set"),
    ("spec.volumes", [{"name": "v", "emptyDir": {}}, {"name": "w", "secret": {"defaultMode": 512}}],
     "spec.volumes[1].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), "
     "both inclusive"),
    ("spec.containers.0.volumeMounts", [{"name": "v", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}],
     "spec.containers[0].volumeMounts[1].name: Not found: \"v\""),
    ("spec.nodeName", "Node_1", 'spec.nodeName: Invalid value: "Node_1": a lowercase RFC 1123 subdomain'),
    ("spec.nodeSelector", {"kubernetes.io/os": "linux", "a/b/c": "x"},
     'spec.nodeSelector: Invalid value: "a/b/c": a qualified name must consist'),
])
def test_first_pass_leaves_errors_to_full_check(path, value, message):
    msgs = _messages(POD, _set(pod(), path, value))
    assert any(m.startswith(message) for m in msgs), msgs


def test_first_passes_accept_only_what_full_checks_accept():
    import random

    from kubeling.api.validation import meta as vmeta
    from kubeling.api.validation import pod as vpod

    rng = random.Random(5)
    strings = ["a", "", "a/b/c", "kubernetes.io/hostname", "Bad Key", "x" * 64, "example.com/a", "A", "-a", "n-1"]

    def maybe(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if rng.random() < 0.85}

    def term() -> dict[str, Any]:
        return maybe({"matchExpressions": [maybe({"key": rng.choice(strings), "values": rng.choice([[], ["a"], ["1", "2"]]),
                                                  "operator": rng.choice(["In", "NotIn", "Exists", "Gt", "Foo"])})],
                      "matchFields": [maybe({"key": rng.choice(["metadata.name", "x"]), "values": rng.choice([["a"], []]),
                                             "operator": rng.choice(["In", "Exists"])})]})

    for _ in range(3000):
        aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term()]}}}
        if vpod._plain_node_affinity(aff):
            assert vpod.validate_affinity(aff, "a") == []
        tols = [maybe({"key": rng.choice(strings), "operator": rng.choice(["Exists", "Equal", "", "Foo"]),
                       "value": rng.choice(["", "v", "bad value"]), "effect": rng.choice(["NoExecute", "NoSchedule", "X"]),
                       "tolerationSeconds": 300}) for _ in range(2)]
        if vpod._plain_tolerations(tols):
            assert vpod.validate_tolerations(tols, "t") == []
        vols = [maybe({"name": rng.choice(["v", "w", "", "V_1"]), rng.choice(["secret", "hostPath", "nfs"]): rng.choice(
            [{}, {"defaultMode": rng.choice([420, 512])}, {"path": rng.choice(["", "/x"])}]),
            rng.choice(["emptyDir", "configMap"]): rng.choice([None, {}])}) for _ in range(2)]
        names = vpod._plain_volume_names(vols)
        if names is not None:
            assert vpod._volumes(vols, "v") == ([], names)
        refs = [maybe({"apiVersion": "v1", "kind": "K", "name": "n", "uid": rng.choice(["u", ""]),
                       "controller": rng.choice([True, False])}) for _ in range(2)]
        if vmeta._plain_owner_references(refs):
            assert vmeta._owner_references(refs, "o") == []
        labels = {rng.choice(strings): rng.choice(strings + ["bad value"])}
        if vmeta.plain_labels(labels):
            assert vmeta.validate_labels(labels, "l") == []
