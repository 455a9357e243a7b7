"""Unit tests of the resource catalogue, discovery documents and OpenAPI documents (no server)."""

from __future__ import annotations

import orjson
import pytest

from kubeling.api import discovery, openapi
from kubeling.api.catalogue import (
    BUILTIN_GROUP_ORDER,
    CATALOGUE,
    Catalogue,
    Resource,
    build_builtin_catalogue,
    version_priority,
)

V2_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)

# kubectl api-resources on a default 1.32 cluster: (name, shortnames, apiVersion, namespaced, kind)
EXPECTED_API_RESOURCES = [
    ("bindings", "", "v1", True, "Binding"),
    ("componentstatuses", "cs", "v1", False, "ComponentStatus"),
    ("configmaps", "cm", "v1", True, "ConfigMap"),
    ("endpoints", "ep", "v1", True, "Endpoints"),
    ("events", "ev", "v1", True, "Event"),
    ("limitranges", "limits", "v1", True, "LimitRange"),
    ("namespaces", "ns", "v1", False, "Namespace"),
    ("nodes", "no", "v1", False, "Node"),
    ("persistentvolumeclaims", "pvc", "v1", True, "PersistentVolumeClaim"),
    ("persistentvolumes", "pv", "v1", False, "PersistentVolume"),
    ("pods", "po", "v1", True, "Pod"),
    ("podtemplates", "", "v1", True, "PodTemplate"),
    ("replicationcontrollers", "rc", "v1", True, "ReplicationController"),
    ("resourcequotas", "quota", "v1", True, "ResourceQuota"),
    ("secrets", "", "v1", True, "Secret"),
    ("serviceaccounts", "sa", "v1", True, "ServiceAccount"),
    ("services", "svc", "v1", True, "Service"),
    ("mutatingwebhookconfigurations", "", "admissionregistration.k8s.io/v1", False, "MutatingWebhookConfiguration"),
    ("validatingadmissionpolicies", "", "admissionregistration.k8s.io/v1", False, "ValidatingAdmissionPolicy"),
    ("validatingadmissionpolicybindings", "", "admissionregistration.k8s.io/v1", False,
     "ValidatingAdmissionPolicyBinding"),
    ("validatingwebhookconfigurations", "", "admissionregistration.k8s.io/v1", False,
     "ValidatingWebhookConfiguration"),
    ("customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", False, "CustomResourceDefinition"),
    ("apiservices", "", "apiregistration.k8s.io/v1", False, "APIService"),
    ("controllerrevisions", "", "apps/v1", True, "ControllerRevision"),
    ("daemonsets", "ds", "apps/v1", True, "DaemonSet"),
    ("deployments", "deploy", "apps/v1", True, "Deployment"),
    ("replicasets", "rs", "apps/v1", True, "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", True, "StatefulSet"),
    ("selfsubjectreviews", "", "authentication.k8s.io/v1", False, "SelfSubjectReview"),
    ("tokenreviews", "", "authentication.k8s.io/v1", False, "TokenReview"),
    ("localsubjectaccessreviews", "", "authorization.k8s.io/v1", True, "LocalSubjectAccessReview"),
    ("selfsubjectaccessreviews", "", "authorization.k8s.io/v1", False, "SelfSubjectAccessReview"),
    ("selfsubjectrulesreviews", "", "authorization.k8s.io/v1", False, "SelfSubjectRulesReview"),
    ("subjectaccessreviews", "", "authorization.k8s.io/v1", False, "SubjectAccessReview"),
    ("horizontalpodautoscalers", "hpa", "autoscaling/v2", True, "HorizontalPodAutoscaler"),
    ("cronjobs", "cj", "batch/v1", True, "CronJob"),
    ("jobs", "", "batch/v1", True, "Job"),
    ("certificatesigningrequests", "csr", "certificates.k8s.io/v1", False, "CertificateSigningRequest"),
    ("leases", "", "coordination.k8s.io/v1", True, "Lease"),
    ("endpointslices", "", "discovery.k8s.io/v1", True, "EndpointSlice"),
    ("events", "ev", "events.k8s.io/v1", True, "Event"),
    ("flowschemas", "", "flowcontrol.apiserver.k8s.io/v1", False, "FlowSchema"),
    ("prioritylevelconfigurations", "", "flowcontrol.apiserver.k8s.io/v1", False, "PriorityLevelConfiguration"),
    ("ingressclasses", "", "networking.k8s.io/v1", False, "IngressClass"),
    ("ingresses", "ing", "networking.k8s.io/v1", True, "Ingress"),
    ("networkpolicies", "netpol", "networking.k8s.io/v1", True, "NetworkPolicy"),
    ("runtimeclasses", "", "node.k8s.io/v1", False, "RuntimeClass"),
    ("poddisruptionbudgets", "pdb", "policy/v1", True, "PodDisruptionBudget"),
    ("clusterrolebindings", "", "rbac.authorization.k8s.io/v1", False, "ClusterRoleBinding"),
    ("clusterroles", "", "rbac.authorization.k8s.io/v1", False, "ClusterRole"),
    ("rolebindings", "", "rbac.authorization.k8s.io/v1", True, "RoleBinding"),
    ("roles", "", "rbac.authorization.k8s.io/v1", True, "Role"),
    ("priorityclasses", "pc", "scheduling.k8s.io/v1", False, "PriorityClass"),
    ("csidrivers", "", "storage.k8s.io/v1", False, "CSIDriver"),
    ("csinodes", "", "storage.k8s.io/v1", False, "CSINode"),
    ("csistoragecapacities", "", "storage.k8s.io/v1", True, "CSIStorageCapacity"),
    ("storageclasses", "sc", "storage.k8s.io/v1", False, "StorageClass"),
    ("volumeattachments", "", "storage.k8s.io/v1", False, "VolumeAttachment"),
]

FULL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _crd_resource(version: str = "v1") -> Resource:
    return Resource(
        group="example.com", version=version, kind="Widget", plural="widgets", singular="widget",
        namespaced=True, verbs=FULL, short_names=("wd",), categories=("all",),
    )


# ---- catalogue -------------------------------------------------------------------------------


def _upstream(resources):
    """Upstream's built-ins: kubeling's own kinds (group *.kubeling.io) come on top of them."""
    return [r for r in resources if not r.group.endswith("kubeling.io")]


def test_kubeling_kinds_are_served_beside_upstream():
    rp = CATALOGUE.lookup("rollouts.kubeling.io", "v1alpha1", "rolloutplans")
    assert rp is not None and rp.short_names == ("rp",) and "status" in rp.subresources
    assert CATALOGUE.groups()[-1] == "rollouts.kubeling.io"


def test_preferred_resources_match_kubectl_api_resources_on_1_32():
    got = sorted(
        (r.plural, ",".join(r.short_names), r.api_version, r.namespaced, r.kind)
        for r in _upstream(CATALOGUE.all()) if r.preferred
    )
    assert got == sorted(EXPECTED_API_RESOURCES)


def test_no_alpha_or_beta_versions_are_served():
    assert all(r.version in ("v1", "v2") for r in _upstream(CATALOGUE.all()))
    assert CATALOGUE.versions("autoscaling") == ["v2", "v1"]
    assert CATALOGUE.versions("flowcontrol.apiserver.k8s.io") == ["v1"]
    assert CATALOGUE.lookup("resource.k8s.io", "v1beta1", "resourceclaims") is None


def test_daemonset_row():
    ds = CATALOGUE.lookup("apps", "v1", "daemonsets")
    assert ds is not None
    assert (ds.kind, ds.singular, ds.namespaced, ds.short_names, ds.categories) == (
        "DaemonSet", "daemonset", True, ("ds",), ("all",))
    assert ds.verbs == FULL
    assert ds.api_version == ds.group_version == "apps/v1"
    assert ds.list_kind == "DaemonSetList"
    assert ds.path_prefix == "/apis/apps/v1"
    assert ds.scope == "Namespaced"
    assert ds.schema_ref == "io.k8s.api.apps.v1.DaemonSet"
    assert ds.storage_prefix == "/registry/daemonsets"
    assert ds.storage_key("kube-system", "fluentd") == "/registry/daemonsets/kube-system/fluentd"
    assert ds.qualified_name == "daemonsets.apps"
    assert list(ds.subresources) == ["status"]
    assert ds.subresources["status"].verbs == ("get", "patch", "update")
    assert ds.storage_version_hash() == "dd7pWHUlMKQ="


def test_core_rows():
    nodes = CATALOGUE.lookup("", "v1", "nodes")
    assert nodes.namespaced is False and nodes.short_names == ("no",) and nodes.scope == "Cluster"
    assert nodes.path_prefix == "/api/v1" and nodes.api_version == "v1"
    assert nodes.storage_key(None, "n1") == "/registry/nodes/n1"
    ns = CATALOGUE.lookup("", "v1", "namespaces")
    assert "deletecollection" not in ns.verbs
    assert set(ns.subresources) == {"finalize", "status"}
    assert ns.subresources["finalize"].verbs == ("update",)
    assert CATALOGUE.lookup("", "v1", "componentstatuses").verbs == ("get", "list")
    assert CATALOGUE.lookup("", "v1", "bindings").verbs == ("create",)
    assert CATALOGUE.lookup("", "v1", "pods").storage_version_hash() == "xPOwRZ+Yhw8="


def test_pod_subresources():
    pods = CATALOGUE.lookup("", "v1", "pods")
    subs = pods.subresources
    assert set(subs) == {"attach", "binding", "ephemeralcontainers", "eviction", "exec", "log",
                         "portforward", "proxy", "status"}
    assert (subs["binding"].kind, subs["binding"].verbs) == ("Binding", ("create",))
    ev = subs["eviction"]
    assert (ev.group, ev.version, ev.kind, ev.verbs, ev.api_version) == ("policy", "v1", "Eviction", ("create",),
                                                                        "policy/v1")
    assert (subs["log"].kind, subs["log"].verbs) == ("Pod", ("get",))
    assert (subs["exec"].kind, subs["exec"].verbs) == ("PodExecOptions", ("create", "get"))
    assert subs["proxy"].verbs == ("create", "delete", "get", "patch", "update")
    assert subs["ephemeralcontainers"].verbs == ("get", "patch", "update")


def test_scale_token_and_approval_subresources():
    for plural in ("statefulsets", "deployments", "replicasets"):
        scale = CATALOGUE.lookup("apps", "v1", plural).subresources["scale"]
        assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
        assert scale.verbs == ("get", "patch", "update")
    assert "scale" in CATALOGUE.lookup("", "v1", "replicationcontrollers").subresources
    token = CATALOGUE.lookup("", "v1", "serviceaccounts").subresources["token"]
    assert (token.group, token.kind, token.verbs) == ("authentication.k8s.io", "TokenRequest", ("create",))
    csr = CATALOGUE.lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
    assert set(csr.subresources) == {"approval", "status"}
    assert CATALOGUE.lookup("", "v1", "services").subresources["proxy"].kind == "ServiceProxyOptions"


def test_categories():
    all_cat = {r.plural for r in _upstream(CATALOGUE.all()) if "all" in r.categories}
    assert all_cat == {"pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets", "jobs",
                       "cronjobs", "replicationcontrollers", "horizontalpodautoscalers"}
    ext = {r.plural for r in CATALOGUE.all() if "api-extensions" in r.categories}
    assert ext == {"customresourcedefinitions", "apiservices", "mutatingwebhookconfigurations",
                   "validatingwebhookconfigurations", "validatingadmissionpolicies",
                   "validatingadmissionpolicybindings"}


def test_invariants():
    seen_gvr = set()
    for r in CATALOGUE.all():
        assert (r.group, r.version, r.plural) not in seen_gvr
        seen_gvr.add((r.group, r.version, r.plural))
        assert r.singular == r.kind.lower()
        assert r.verbs == tuple(sorted(r.verbs))
        assert r.schema_ref, r
        assert CATALOGUE.by_kind(r.api_version, r.kind) is r
        assert r.storage_prefix.startswith("/registry/") and not r.storage_prefix.endswith("/")
        for s in r.subresources.values():
            assert s.verbs and s.verbs == tuple(sorted(s.verbs))
    # groups in /apis order, core first in all()
    assert [g for g in CATALOGUE.groups() if not g.endswith("kubeling.io")] == list(BUILTIN_GROUP_ORDER)
    assert CATALOGUE.all()[0].group == ""


def test_versions_without_conversion_keep_separate_storage():
    # no version conversion yet: each served version keeps its own objects, never mixed shapes
    core = CATALOGUE.lookup("", "v1", "events")
    new = CATALOGUE.lookup("events.k8s.io", "v1", "events")
    assert core.storage_prefix == "/registry/events"
    assert new.storage_prefix == "/registry/events.k8s.io/events"
    assert new.schema_ref == "io.k8s.api.events.v1.Event"
    v1 = CATALOGUE.lookup("autoscaling", "v1", "horizontalpodautoscalers")
    v2 = CATALOGUE.lookup("autoscaling", "v2", "horizontalpodautoscalers")
    assert v1.storage_prefix != v2.storage_prefix
    assert (v1.preferred, v2.preferred) == (False, True)
    crd = CATALOGUE.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    assert crd.storage_prefix == "/registry/apiextensions.k8s.io/customresourcedefinitions"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ds", ("apps/v1", "daemonsets")),
        ("daemonsets", ("apps/v1", "daemonsets")),
        ("daemonset", ("apps/v1", "daemonsets")),
        ("daemonset.apps", ("apps/v1", "daemonsets")),
        ("daemonsets.v1.apps", ("apps/v1", "daemonsets")),
        ("DaemonSet", ("apps/v1", "daemonsets")),
        ("po", ("v1", "pods")),
        ("events", ("v1", "events")),
        ("events.events.k8s.io", ("events.k8s.io/v1", "events")),
        ("hpa", ("autoscaling/v2", "horizontalpodautoscalers")),
        ("horizontalpodautoscalers.v1.autoscaling", ("autoscaling/v1", "horizontalpodautoscalers")),
        ("crds", ("apiextensions.k8s.io/v1", "customresourcedefinitions")),
        ("leases.coordination.k8s.io", ("coordination.k8s.io/v1", "leases")),
    ],
)
def test_resolve(name, expected):
    r = CATALOGUE.resolve(name)
    assert r is not None and (r.api_version, r.plural) == expected


def test_resolve_unknown():
    assert CATALOGUE.resolve("nosuchthing") is None
    assert CATALOGUE.resolve("daemonsets.batch") is None
    assert CATALOGUE.resolve("") is None


def test_add_and_remove_custom_resources():
    cat = build_builtin_catalogue()
    gen = cat.generation
    cat.add(_crd_resource("v1beta1"))
    cat.add(_crd_resource("v1"))
    assert cat.generation > gen
    groups = cat.groups()
    assert groups.index("example.com") > max(groups.index(g) for g in BUILTIN_GROUP_ORDER)
    assert cat.versions("example.com") == ["v1", "v1beta1"]
    w = cat.lookup("example.com", "v1", "widgets")
    assert w.storage_prefix == "/registry/example.com/widgets"
    assert w.storage_version == "example.com/v1"
    assert cat.resolve("wd") is w
    assert cat.by_kind("example.com/v1beta1", "Widget").version == "v1beta1"
    assert cat.remove("example.com", "v1", "widgets") is w
    assert cat.versions("example.com") == ["v1beta1"]
    # the singleton is untouched
    assert CATALOGUE.lookup("example.com", "v1beta1", "widgets") is None


def test_version_priority():
    vs = ["v1alpha1", "v2beta1", "v1", "v1beta2", "v2", "foo", "v1beta1"]
    assert sorted(vs, key=version_priority) == ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]


# ---- discovery -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (V2_ACCEPT, "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
        ("application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io", "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer," + V2_ACCEPT, "v2"),
        ("application/json, */*", None),
        ("application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList", None),
        ("", None),
        (None, None),
    ],
)
def test_negotiate_discovery(accept, expected):
    assert discovery.negotiate_discovery(accept) == expected


def test_legacy_api_and_apis():
    body, ctype = discovery.discovery_response(CATALOGUE, "/api", "application/json", server_address="10.0.0.1:6443")
    assert ctype == "application/json"
    assert body == {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}
    body, _ = discovery.discovery_response(CATALOGUE, "/apis", None, server_address="x")
    assert body["kind"] == "APIGroupList" and body["apiVersion"] == "v1"
    assert [g["name"] for g in body["groups"]] == [*BUILTIN_GROUP_ORDER, "rollouts.kubeling.io"]
    autoscaling = next(g for g in body["groups"] if g["name"] == "autoscaling")
    assert autoscaling["versions"] == [{"groupVersion": "autoscaling/v2", "version": "v2"},
                                       {"groupVersion": "autoscaling/v1", "version": "v1"}]
    assert autoscaling["preferredVersion"] == {"groupVersion": "autoscaling/v2", "version": "v2"}
    group, _ = discovery.discovery_response(CATALOGUE, "/apis/apps", None, server_address="x")
    assert group["kind"] == "APIGroup" and group["name"] == "apps"


def test_api_v1_resource_list():
    body, ctype = discovery.discovery_response(CATALOGUE, "/api/v1", V2_ACCEPT, server_address="x")
    assert ctype == "application/json"
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == "v1" and "apiVersion" not in body
    by_name = {e["name"]: e for e in body["resources"]}
    assert by_name["pods"] == {
        "name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": list(FULL),
        "shortNames": ["po"], "categories": ["all"], "storageVersionHash": "xPOwRZ+Yhw8=",
    }
    assert by_name["pods/status"] == {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
                                      "verbs": ["get", "patch", "update"]}
    assert by_name["pods/eviction"]["group"] == "policy" and by_name["pods/eviction"]["kind"] == "Eviction"
    assert by_name["pods/binding"]["verbs"] == ["create"]
    assert by_name["nodes"]["namespaced"] is False
    names = [e["name"] for e in body["resources"]]
    assert names == sorted(names)


def test_group_version_resource_list():
    body, _ = discovery.discovery_response(CATALOGUE, "/apis/apps/v1/", None, server_address="x")
    assert body["apiVersion"] == "v1" and body["groupVersion"] == "apps/v1"
    names = [e["name"] for e in body["resources"]]
    assert "daemonsets" in names and "daemonsets/status" in names and "statefulsets/scale" in names
    scale = next(e for e in body["resources"] if e["name"] == "statefulsets/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert discovery.discovery_response(CATALOGUE, "/apis/apps/v2", None, server_address="x") is None
    assert discovery.discovery_response(CATALOGUE, "/apis/nope", None, server_address="x") is None
    assert discovery.discovery_response(CATALOGUE, "/api/v2", None, server_address="x") is None


def test_aggregated_discovery_apis():
    body, ctype = discovery.discovery_response(CATALOGUE, "/apis", V2_ACCEPT, server_address="x")
    assert ctype == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert body["kind"] == "APIGroupDiscoveryList" and body["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert [g["metadata"]["name"] for g in body["items"]] == [*BUILTIN_GROUP_ORDER, "rollouts.kubeling.io"]
    apps = next(g for g in body["items"] if g["metadata"]["name"] == "apps")
    (v1,) = apps["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    ds = next(r for r in v1["resources"] if r["resource"] == "daemonsets")
    assert ds == {
        "resource": "daemonsets", "responseKind": {"group": "apps", "version": "v1", "kind": "DaemonSet"},
        "scope": "Namespaced", "singularResource": "daemonset", "verbs": list(FULL), "shortNames": ["ds"],
        "categories": ["all"],
        "subresources": [{"subresource": "status",
                          "responseKind": {"group": "apps", "version": "v1", "kind": "DaemonSet"},
                          "verbs": ["get", "patch", "update"]}],
    }
    autoscaling = next(g for g in body["items"] if g["metadata"]["name"] == "autoscaling")
    assert [v["version"] for v in autoscaling["versions"]] == ["v2", "v1"]


def test_aggregated_discovery_api_core_and_v2beta1():
    accept = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    body, ctype = discovery.discovery_response(CATALOGUE, "/api", accept, server_address="x")
    assert ctype == "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    assert body["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    (core,) = body["items"]
    assert "name" not in core["metadata"]
    (v1,) = core["versions"]
    nodes = next(r for r in v1["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster" and nodes["shortNames"] == ["no"]
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    eviction = next(s for s in pods["subresources"] if s["subresource"] == "eviction")
    assert eviction == {"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                        "verbs": ["create"]}


def test_discovery_sees_added_resources():
    cat = build_builtin_catalogue()
    before, _ = discovery.discovery_response(cat, "/apis", V2_ACCEPT, server_address="x")
    assert "example.com" not in [g["metadata"]["name"] for g in before["items"]]
    cat.add(_crd_resource())
    after, _ = discovery.discovery_response(cat, "/apis", V2_ACCEPT, server_address="x")
    assert "example.com" in [g["metadata"]["name"] for g in after["items"][len(BUILTIN_GROUP_ORDER):]]
    legacy, _ = discovery.discovery_response(cat, "/apis/example.com/v1", None, server_address="x")
    assert legacy["resources"][0]["name"] == "widgets" and legacy["resources"][0]["shortNames"] == ["wd"]
    groups, _ = discovery.discovery_response(cat, "/apis", None, server_address="x")
    assert "example.com" in [g["name"] for g in groups["groups"][len(BUILTIN_GROUP_ORDER):]]


# ---- openapi ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apps_v3() -> dict:
    body = openapi.openapi_v3_doc("apis/apps/v1")
    assert body is not None
    return orjson.loads(body)


def test_v3_index():
    idx = openapi.openapi_v3_index()
    paths = idx["paths"]
    assert "api/v1" in paths and "apis/apps/v1" in paths and "apis/autoscaling/v1" in paths
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    assert url.split("hash=")[1] == openapi.openapi_v3_hash("apis/apps/v1")
    assert openapi.openapi_v3_doc("/openapi/v3/apis/apps/v1?hash=abc") == openapi.openapi_v3_doc("apis/apps/v1")
    assert openapi.openapi_v3_doc("apis/apps/v2") is None


def test_v3_apps_daemonset_schema(apps_v3):
    assert apps_v3["openapi"].startswith("3.0")
    schemas = apps_v3["components"]["schemas"]
    ds = schemas["io.k8s.api.apps.v1.DaemonSet"]
    assert ds["description"] == "DaemonSet represents the configuration of a daemon set."
    assert ds["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "DaemonSet", "version": "v1"}]
    assert ds["type"] == "object"
    assert ds["properties"]["kind"] == {"description": ds["properties"]["kind"]["description"], "type": "string"}
    assert ds["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DaemonSetSpec"}]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    ios = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert ios["format"] == "int-or-string" and ios["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"] == [{"type": "number"}, {"type": "string"}]
    # every reference resolves inside the document
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(apps_v3)
    assert refs <= set(schemas)


def _params(op: dict) -> set[str]:
    return {p["name"] for p in op["parameters"]}


def test_v3_apps_paths_support_field_validation(apps_v3):
    paths = apps_v3["paths"]
    coll = paths["/apis/apps/v1/namespaces/{namespace}/daemonsets"]
    post = coll["post"]
    assert post["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "DaemonSet", "version": "v1"}
    assert post["x-kubernetes-action"] == "post"
    assert {"fieldValidation", "dryRun", "fieldManager"} <= _params(post)
    assert post["requestBody"]["content"]["*/*"]["schema"] == {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DaemonSet"}
    assert coll["get"]["x-kubernetes-action"] == "list"
    item = paths["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]
    assert set(item) == {"get", "put", "patch", "delete", "parameters"}
    assert "fieldValidation" in _params(item["patch"]) and "fieldValidation" in _params(item["put"])
    assert "application/strategic-merge-patch+json" in item["patch"]["requestBody"]["content"]
    # what cli-runtime's queryParamVerifierV3 does: every PATCH tagged with the GVK lists fieldValidation
    for kind in ("DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "ControllerRevision"):
        patches = [item["patch"] for item in paths.values()
                   if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"]["kind"] == kind]
        assert patches and all("fieldValidation" in _params(p) for p in patches)
    scale = paths["/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/scale"]
    assert scale["put"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "/apis/apps/v1/daemonsets" in paths  # list across namespaces


def test_v3_core_doc_has_subresources_and_cluster_paths():
    doc = orjson.loads(openapi.openapi_v3_doc("api/v1"))
    paths = doc["paths"]
    assert "post" in paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]
    assert "post" in paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["get"]["x-kubernetes-action"] == "connect"
    assert set(paths["/api/v1/nodes/{name}"]) >= {"get", "put", "patch", "delete"}
    assert "fieldValidation" in _params(paths["/api/v1/namespaces"]["post"])
    ns_patch = paths["/api/v1/namespaces/{name}"]["patch"]
    assert ns_patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Namespace", "version": "v1"}
    assert "fieldValidation" in _params(ns_patch)
    assert "io.k8s.api.core.v1.Pod" in doc["components"]["schemas"]


def test_v2_document():
    doc = orjson.loads(openapi.openapi_v2())
    assert doc["swagger"] == "2.0"
    defs = doc["definitions"]
    ds = defs["io.k8s.api.apps.v1.DaemonSet"]
    assert ds["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "DaemonSet", "version": "v1"}]
    assert ds["properties"]["spec"] == {
        "$ref": "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec",
        "description": ds["properties"]["spec"]["description"],
    }
    assert "io.k8s.api.core.v1.Pod" in defs and "io.k8s.api.autoscaling.v1.Scale" in defs
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    # only served versions are described
    assert not any(".v1beta1." in name or ".v1alpha" in name for name in defs if ".kubeling." not in name)
    assert "io.kubeling.rollouts.v1alpha1.RolloutPlan" in defs
    post = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets"]["post"]
    names = [p["name"] for p in post["parameters"]]
    assert names[0] == "body" and "fieldValidation" in names
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]


def test_catalogue_is_a_catalogue():
    assert isinstance(CATALOGUE, Catalogue)
    assert Catalogue([_crd_resource()]).groups() == ["example.com"]
