"""CustomResourceDefinitions end to end, with the real kubectl and the kubernetes client."""

from __future__ import annotations

import json

import pytest
import yaml

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas,
              labelSelectorPath: .status.labelSelector}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    selectableFields:
    - jsonPath: .spec.color
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: "replicas must be no more than maxReplicas"
            - rule: "!has(oldSelf.image) || self.image == oldSelf.image"
              message: "image is immutable"
            properties:
              cronSpec: {type: string, pattern: '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'}
              image: {type: string}
              color: {type: string, default: blue, enum: [blue, red]}
              replicas: {type: integer, minimum: 1, default: 1}
              maxReplicas: {type: integer, default: 10}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              replicas: {type: integer}
              labelSelector: {type: string}
"""

TWO_VERSIONS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.demo.kubeling.io
spec:
  group: demo.kubeling.io
  scope: Cluster
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""

WEBHOOK_CONVERSION = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.demo.kubeling.io
spec:
  group: demo.kubeling.io
  scope: Namespaced
  names: {plural: gadgets, kind: Gadget}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig: {service: {name: converter, namespace: default, path: /convert}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v2
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def _ct(name: str, **spec: object) -> str:
    return yaml.safe_dump({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                           "metadata": {"name": name}, "spec": {"cronSpec": "* * * * */5", "image": "img", **spec}})


@pytest.fixture(scope="module")
def crd_cluster(cluster):
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=30s")
    return cluster


def test_crd_status_and_discovery(crd_cluster):
    crd = json.loads(crd_cluster.kubectl("get", "crd", "crontabs.stable.example.com", "-o", "json"))
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conds["NamesAccepted"]["status"] == "True" and conds["NamesAccepted"]["reason"] == "NoConflicts"
    assert conds["Established"]["status"] == "True"
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["status"]["acceptedNames"]["listKind"] == "CronTabList"
    out = crd_cluster.kubectl("api-resources", "--api-group=stable.example.com")
    assert "crontabs" in out and "ct" in out and "CronTab" in out
    explain = crd_cluster.kubectl("explain", "crontab.spec")
    assert "cronSpec" in explain and "replicas" in explain


def test_defaulting_pruning_and_strict_fields(crd_cluster):
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=_ct("strict", bogus=1))
    assert r.returncode != 0 and 'unknown field "spec.bogus"' in r.stderr
    crd_cluster.kubectl("create", "--validate=false", "-f", "-", input=_ct("pruned", bogus=1, extra={"keep": 1}))
    obj = json.loads(crd_cluster.kubectl("get", "ct", "pruned", "-o", "json"))
    assert "bogus" not in obj["spec"]
    assert obj["spec"]["extra"] == {"keep": 1}
    assert obj["spec"]["color"] == "blue" and obj["spec"]["replicas"] == 1 and obj["spec"]["maxReplicas"] == 10
    assert obj["metadata"]["generation"] == 1


def test_schema_errors_use_upstream_messages(crd_cluster):
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=_ct("bad", replicas="three", color="green"))
    assert r.returncode != 0
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"' in r.stderr
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=_ct("bad", replicas=0, color="green"))
    assert 'spec.color: Unsupported value: "green": supported values: "blue", "red"' in r.stderr
    assert "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1" in r.stderr
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=_ct("bad", cronSpec="nope"))
    assert "spec.cronSpec in body should match" in r.stderr


def test_cel_rules(crd_cluster):
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=_ct("cel", replicas=5, maxReplicas=3))
    assert r.returncode != 0
    assert 'spec: Invalid value: "object": replicas must be no more than maxReplicas' in r.stderr
    crd_cluster.kubectl("apply", "-f", "-", input=_ct("cel", replicas=2, maxReplicas=3))
    r = crd_cluster.kubectl_result("patch", "ct", "cel", "--type=merge", "-p", '{"spec":{"image":"other"}}')
    assert r.returncode != 0 and "image is immutable" in r.stderr
    crd_cluster.kubectl("patch", "ct", "cel", "--type=merge", "-p", '{"spec":{"replicas":3}}')


def test_printer_columns_and_field_selectors(crd_cluster):
    crd_cluster.kubectl("apply", "-f", "-", input=_ct("printed", replicas=2, color="red"))
    out = crd_cluster.kubectl("get", "ct", "printed")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "SPEC", "REPLICAS"]
    assert row.split()[0] == "printed" and "2" in row.split()
    assert "COLOR" in crd_cluster.kubectl("get", "ct", "printed", "-o", "wide")
    names = crd_cluster.kubectl("get", "ct", "--field-selector", "spec.color=red", "-o", "name").split()
    assert "crontab.stable.example.com/printed" in names and "crontab.stable.example.com/pruned" not in names
    r = crd_cluster.kubectl_result("get", "ct", "--field-selector", "spec.image=x")
    assert r.returncode != 0 and "is not a known field selector" in r.stderr


def test_status_subresource_and_scale(crd_cluster):
    crd_cluster.kubectl("apply", "-f", "-", input=_ct("scaled", replicas=1))
    crd_cluster.kubectl("patch", "ct", "scaled", "--type=merge", "-p", '{"status":{"replicas":7}}')
    obj = json.loads(crd_cluster.kubectl("get", "ct", "scaled", "-o", "json"))
    assert "status" not in obj  # the main endpoint ignores status
    crd_cluster.kubectl("patch", "ct", "scaled", "--subresource=status", "--type=merge",
                        "-p", '{"status":{"replicas":2},"spec":{"replicas":9}}')
    obj = json.loads(crd_cluster.kubectl("get", "ct", "scaled", "-o", "json"))
    assert obj["status"]["replicas"] == 2 and obj["spec"]["replicas"] == 1
    crd_cluster.kubectl("scale", "ct", "scaled", "--replicas=4")
    obj = json.loads(crd_cluster.kubectl("get", "ct", "scaled", "-o", "json"))
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["generation"] == 2
    scale = json.loads(crd_cluster.kubectl("get", "--raw",
                                           "/apis/stable.example.com/v1/namespaces/default/crontabs/scaled/scale"))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4 and scale["status"]["replicas"] == 2


def test_python_client_crud_and_openapi(crd_cluster):
    from kubernetes import client

    api = client.CustomObjectsApi(crd_cluster.api_client())
    body = yaml.safe_load(_ct("pyobj"))
    created = api.create_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs", body)
    assert created["spec"]["color"] == "blue"
    got = api.get_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs", "pyobj")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    items = api.list_namespaced_custom_object("stable.example.com", "v1", "default", "crontabs")["items"]
    assert "pyobj" in {i["metadata"]["name"] for i in items}
    v2 = json.loads(crd_cluster.kubectl("get", "--raw", "/openapi/v2"))
    assert "com.example.stable.v1.CronTab" in v2["definitions"]
    index = json.loads(crd_cluster.kubectl("get", "--raw", "/openapi/v3"))
    assert "apis/stable.example.com/v1" in index["paths"]


def test_two_versions_none_conversion(crd_cluster):
    crd_cluster.kubectl("apply", "-f", "-", input=TWO_VERSIONS)
    crd_cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.demo.kubeling.io", "--timeout=30s")
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "demo.kubeling.io/v1beta1", "kind": "Widget", "metadata": {"name": "w1"}, "data": {"a": 1}}))
    assert r.returncode == 0, r.stderr
    assert "demo.kubeling.io/v1beta1 Widget is deprecated" in r.stderr
    v1 = json.loads(crd_cluster.kubectl("get", "widgets.v1.demo.kubeling.io", "w1", "-o", "json"))
    assert v1["apiVersion"] == "demo.kubeling.io/v1" and v1["data"] == {"a": 1}
    old = json.loads(crd_cluster.kubectl("get", "--raw", "/apis/demo.kubeling.io/v1beta1/widgets/w1"))
    assert old["apiVersion"] == "demo.kubeling.io/v1beta1"


def test_webhook_conversion_accepted_with_clear_error(crd_cluster):
    crd_cluster.kubectl("apply", "-f", "-", input=WEBHOOK_CONVERSION)
    crd_cluster.kubectl("wait", "--for=condition=Established", "crd/gadgets.demo.kubeling.io", "--timeout=30s")
    stored = json.loads(crd_cluster.kubectl("get", "crd", "gadgets.demo.kubeling.io", "-o", "json"))
    assert stored["spec"]["conversion"]["strategy"] == "Webhook"
    crd_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "demo.kubeling.io/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "x": 1}))
    r = crd_cluster.kubectl_result("get", "--raw", "/apis/demo.kubeling.io/v2/namespaces/default/gadgets/g1")
    assert r.returncode != 0 and "conversion webhook for demo.kubeling.io/v1, Kind=Gadget failed" in r.stderr
    same = json.loads(crd_cluster.kubectl("get", "--raw", "/apis/demo.kubeling.io/v1/namespaces/default/gadgets/g1"))
    assert same["x"] == 1


def test_invalid_crd_rejected(crd_cluster):
    bad = yaml.safe_load(CRD)
    bad["metadata"]["name"] = "wrong.stable.example.com"
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert r.returncode != 0 and 'metadata.name: Invalid value: "wrong.stable.example.com"' in r.stderr
    bad = yaml.safe_load(CRD)
    bad["metadata"]["name"] = "things.stable.example.com"
    bad["spec"]["names"] = {"plural": "things", "kind": "Thing"}
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"] = [{"rule": "self.replicas <"}]
    r = crd_cluster.kubectl_result("apply", "-f", "-", input=yaml.safe_dump(bad))
    assert r.returncode != 0 and "compilation failed" in r.stderr


def test_delete_crd_removes_objects_and_restart_serves_crds(crd_cluster):
    crd_cluster.kubectl("apply", "-f", "-", input=CRD.replace("crontabs", "tempcrons").replace(
        "CronTab", "TempCron").replace("shortNames: [ct]", "shortNames: [tc]"))
    crd_cluster.kubectl("wait", "--for=condition=Established", "crd/tempcrons.stable.example.com", "--timeout=30s")
    crd_cluster.kubectl("apply", "-f", "-", input=_ct("t1").replace("CronTab", "TempCron"))
    crd_cluster.restart()
    assert "t1" in crd_cluster.kubectl("get", "tempcrons", "-o", "name")
    assert "crontabs" in crd_cluster.kubectl("api-resources", "--api-group=stable.example.com")
    crd_cluster.kubectl("delete", "crd", "tempcrons.stable.example.com", "--timeout=60s")
    r = crd_cluster.kubectl_result("get", "--raw", "/apis/stable.example.com/v1/namespaces/default/tempcrons")
    assert r.returncode != 0
    crd_cluster.kubectl("apply", "-f", "-", input=CRD.replace("crontabs", "tempcrons").replace(
        "CronTab", "TempCron").replace("shortNames: [ct]", "shortNames: [tc]"))
    crd_cluster.kubectl("wait", "--for=condition=Established", "crd/tempcrons.stable.example.com", "--timeout=30s")
    assert crd_cluster.kubectl("get", "tempcrons", "-o", "name").strip() == ""


