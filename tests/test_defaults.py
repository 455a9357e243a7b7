"""Defaults, strategies and canonical quantities on the seed and real-world manifests."""

from __future__ import annotations

import copy
import glob

import pytest
import yaml

from kubeling.api import quantity, schema
from kubeling.api.defaults import apply_defaults, image_pull_policy
from kubeling.api.strategies import strategy_for

MANIFESTS = sorted(glob.glob("/work/shared/manifests/*.yaml") + glob.glob("/work/shared/real-manifests/*.yaml"))


def _gvk(doc: dict) -> tuple[str, str, str]:
    api = doc["apiVersion"]
    group, _, version = api.rpartition("/")
    return group, version, doc["kind"]


def _docs():
    for path in MANIFESTS:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc:
                    yield pytest.param(doc, id=f"{path.rsplit('/', 1)[-1]}#{i}-{doc.get('kind')}")


@pytest.mark.parametrize("doc", list(_docs()))
def test_manifest_validates_after_defaults(doc):
    res = _gvk(doc)
    obj = copy.deepcopy(doc)
    errors, _ = schema.validate(res, obj)
    assert errors == [], [str(e) for e in errors]
    apply_defaults(res, obj)
    meta = obj.setdefault("metadata", {})
    strat = strategy_for(res)
    if strat.namespaced:
        meta.setdefault("namespace", "default")
    strat.prepare_for_create(obj)
    quantity.canonicalize_quantities(res, obj)
    assert [str(e) for e in strat.validate(obj)] == []
    assert schema.validate(res, obj)[0] == []
    # applying defaults twice changes nothing (kubectl apply must see a stable object)
    again = copy.deepcopy(obj)
    apply_defaults(res, again)
    assert again == obj
    # an update with the same object is valid and keeps generation
    new = copy.deepcopy(obj)
    strat.prepare_for_update(new, obj)
    assert [str(e) for e in strat.validate_update(new, obj)] == []
    assert new.get("metadata", {}).get("generation") == meta.get("generation")


def _ds():
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx",
                                                           "ports": [{"containerPort": 80}],
                                                           "livenessProbe": {"httpGet": {"port": 80}}}],
                                           "volumes": [{"name": "v"}, {"name": "h", "hostPath": {"path": "/x"}},
                                                       {"name": "s", "secret": {"secretName": "s"}}]}}}}


def test_daemonset_defaults():
    ds = _ds()
    apply_defaults(("apps", "v1", "DaemonSet"), ds)
    spec = ds["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["schedulerName"] == "default-scheduler" and pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"] == {}
    assert "enableServiceLinks" not in pod  # pods only
    c = pod["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log" and c["terminationMessagePolicy"] == "File"
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert pod["volumes"][0] == {"name": "v", "emptyDir": {}}
    assert pod["volumes"][1]["hostPath"]["type"] == ""
    assert pod["volumes"][2]["secret"]["defaultMode"] == 420


def test_daemonset_strategy_generation_and_template_generation():
    res = ("apps", "v1", "DaemonSet")
    ds = _ds()
    apply_defaults(res, ds)
    s = strategy_for(res)
    ds["status"] = {"numberReady": 5}
    s.prepare_for_create(ds)
    assert ds["metadata"]["generation"] == 1
    assert ds["status"] == {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                            "desiredNumberScheduled": 0, "numberReady": 0}
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    new = copy.deepcopy(ds)
    new["status"] = {"numberReady": 3}
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    s.prepare_for_update(new, ds)
    assert new["metadata"]["generation"] == 2
    assert new["status"] == ds["status"]
    assert new["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"
    st = strategy_for(res, "status")
    upd = copy.deepcopy(new)
    upd["spec"]["minReadySeconds"] = 9
    upd["status"] = {"numberReady": 7}
    st.prepare_for_update(upd, new)
    assert upd["spec"] == new["spec"] and upd["status"] == {"numberReady": 7}


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:v1", "IfNotPresent"),
    ("nginx@sha256:abcd", "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy


def test_pod_defaults_and_qos():
    res = ("", "v1", "Pod")
    pod = {"metadata": {"name": "p", "namespace": "d"},
           "spec": {"hostNetwork": True,
                    "containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 8080}],
                                    "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
                                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}}
    apply_defaults(res, pod)
    c = pod["spec"]["containers"][0]
    assert c["resources"]["requests"] == {"cpu": "1000m", "memory": "1024Mi"}
    assert c["ports"][0]["hostPort"] == 8080
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert pod["spec"]["enableServiceLinks"] is True
    quantity.canonicalize_quantities(res, pod)
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    s = strategy_for(res)
    s.prepare_for_create(pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert "generation" not in pod["metadata"]


def test_other_kind_defaults():
    svc = {"spec": {"ports": [{"port": 80}]}}
    apply_defaults(("", "v1", "Service"), svc)
    assert svc["spec"] == {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "sessionAffinity": "None",
                           "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
                           "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}
    sts = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}], "template": {"spec": {}}}}
    apply_defaults(("apps", "v1", "StatefulSet"), sts)
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert sts["spec"]["volumeClaimTemplates"][0]["status"] == {"phase": "Pending"}
    dep = {"spec": {"template": {"spec": {}}}}
    apply_defaults(("apps", "v1", "Deployment"), dep)
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert dep["spec"]["progressDeadlineSeconds"] == 600 and dep["spec"]["revisionHistoryLimit"] == 10
    sec = {}
    apply_defaults(("", "v1", "Secret"), sec)
    assert sec["type"] == "Opaque"
    pc = {}
    apply_defaults(("scheduling.k8s.io", "v1", "PriorityClass"), pc)
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    crb = {"roleRef": {"kind": "ClusterRole", "name": "x"}, "subjects": [{"kind": "User", "name": "u"},
                                                                           {"kind": "ServiceAccount", "name": "s"}]}
    apply_defaults(("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"), crb)
    assert crb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert crb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and "apiGroup" not in crb["subjects"][1]
    ns = {"metadata": {"name": "team"}}
    apply_defaults(("", "v1", "Namespace"), ns)
    strategy_for(("", "v1", "Namespace")).prepare_for_create(ns)
    assert ns["status"] == {"phase": "Active"} and ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}


@pytest.mark.parametrize(("text", "canon"), [
    ("1000m", "1"), ("1024Mi", "1Gi"), ("1e3", "1e3"), ("0.5", "500m"), ("100m", "100m"), ("1500", "1500"),
    ("2000", "2k"), ("1.5Gi", "1536Mi"), ("0", "0"), ("128974848", "128974848"), ("129M", "129M"),
])
def test_quantity_canonical(text, canon):
    assert quantity.canonical(text) == canon


def test_quantity_compare_and_errors():
    assert quantity.compare("1", "1000m") == 0 and quantity.compare("1Gi", "1G") == 1
    with pytest.raises(quantity.QuantityError, match="quantities must match the regular expression"):
        quantity.parse("abc")
