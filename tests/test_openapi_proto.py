"""/openapi/v2 as protobuf (gnostic's openapi.v2.Document), negotiated and cached as kube-openapi serves it."""

from __future__ import annotations

import base64
import gzip
import json
import tempfile

import pytest
import requests
import yaml

from kubeling.apiserver import openapi_proto
from tests.conftest import Cluster

PROTO_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what kubectl sends
PROTO_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # what upstream answers

LIST = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: from-list-a}
  data: {x: "1"}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: from-list-b}
  data: {y: "2"}
"""

CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.proto.example.com}
spec:
  group: proto.example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"""


class Http:
    def __init__(self, cluster: Cluster) -> None:
        cfg = yaml.safe_load(cluster.kubeconfig.read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        self.ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)  # noqa: SIM115
        self.ca.write(base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]))
        self.ca.flush()
        self.token = cfg["users"][0]["user"]["token"]

    def get(self, path: str, **headers: str) -> requests.Response:
        # no Accept-Encoding unless asked: requests would otherwise add gzip and decode it silently
        hdrs = {"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"}
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return requests.get(self.base + path, headers=hdrs, verify=self.ca.name, timeout=60, stream=True)


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Http:
    return Http(cluster)


def decode(body: bytes):
    doc = openapi_proto.message_class("Document")()
    doc.ParseFromString(body)
    return doc


def named(items, name: str):
    return next(i.value for i in items if i.name == name)


# ---- kubectl --------------------------------------------------------------------------------------------
def test_kubectl_creates_a_list(cluster: Cluster):
    out = cluster.kubectl("create", "-f", "-", input=LIST)
    assert "configmap/from-list-a created" in out and "configmap/from-list-b created" in out
    got = json.loads(cluster.kubectl("get", "cm", "from-list-a", "from-list-b", "-o", "json"))
    assert [i["metadata"]["name"] for i in got["items"]] == ["from-list-a", "from-list-b"]


def test_kubectl_validates_list_items_with_the_protobuf_document(cluster: Cluster):
    bad = yaml.safe_load(LIST)
    bad["items"] = [dict(bad["items"][0], bogus=1, metadata={"name": "from-list-bad"})]
    r = cluster.kubectl_result("create", "-f", "-", "--validate=strict", input=yaml.safe_dump(bad))
    assert r.returncode != 0
    assert 'unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in r.stderr
    assert cluster.kubectl_result("get", "cm", "from-list-bad").returncode != 0


# ---- the document -------------------------------------------------------------------------------------
def test_protobuf_document_carries_the_json_document(http: Http):
    js = http.get("/openapi/v2", Accept="application/json")
    pb = http.get("/openapi/v2", Accept=PROTO_ACCEPT)
    assert js.status_code == 200 and pb.status_code == 200
    assert pb.headers["Content-Type"] == PROTO_TYPE
    spec = js.json()
    doc = decode(pb.content)
    assert doc.swagger == "2.0" and doc.info.title == spec["info"]["title"]
    assert [p.name for p in doc.paths.path] == list(spec["paths"])
    assert [d.name for d in doc.definitions.additional_properties] == list(spec["definitions"])
    assert doc.security_definitions.additional_properties[0].value.api_key_security.name == "authorization"

    pod = named(doc.definitions.additional_properties, "io.k8s.api.core.v1.Pod")
    gvk = named(pod.vendor_extension, "x-kubernetes-group-version-kind")
    assert yaml.safe_load(gvk.yaml) == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert named(pod.properties.additional_properties, "spec")._ref == "#/definitions/io.k8s.api.core.v1.PodSpec"
    containers = named(named(doc.definitions.additional_properties,
                             "io.k8s.api.core.v1.PodSpec").properties.additional_properties, "containers")
    assert list(containers.type.value) == ["array"]
    assert containers.items.schema[0]._ref == "#/definitions/io.k8s.api.core.v1.Container"
    assert yaml.safe_load(named(containers.vendor_extension, "x-kubernetes-list-map-keys").yaml) == ["name"]

    pods = named(doc.paths.path, "/api/v1/namespaces/{namespace}/pods")
    assert pods.post.operation_id == spec["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"]["operationId"]
    body = next(p.parameter.body_parameter for p in pods.post.parameters if p.parameter.HasField("body_parameter"))
    assert body.name == "body" and body.schema._ref == "#/definitions/io.k8s.api.core.v1.Pod"
    queries = [p.parameter.non_body_parameter.query_parameter_sub_schema.name for p in pods.post.parameters
               if p.parameter.non_body_parameter.HasField("query_parameter_sub_schema")]
    assert "fieldValidation" in queries
    path_param = pods.parameters[0].parameter.non_body_parameter.path_parameter_sub_schema
    assert path_param.name == "namespace" and path_param.required
    ok = named(pods.post.responses.response_code, "201").response.schema.schema
    assert ok._ref == "#/definitions/io.k8s.api.core.v1.Pod"


def test_caching_headers_and_negotiation(http: Http):
    js = http.get("/openapi/v2")  # no Accept: */*, JSON first
    assert js.headers["Content-Type"] == "application/json"
    pb = http.get("/openapi/v2", Accept=PROTO_TYPE)
    etag = js.headers["Etag"]
    # upstream: the quoted upper-case hex SHA-512 of the JSON document, for both forms (Vary: Accept)
    assert etag.startswith('"') and len(etag) == 130 and etag[1:-1] == etag[1:-1].upper()
    assert pb.headers["Etag"] == etag
    assert "Accept" in js.headers["Vary"] and js.headers["Cache-Control"] == "no-cache, private"
    assert js.headers["Last-Modified"].endswith(" GMT")

    again = http.get("/openapi/v2", Accept=PROTO_ACCEPT, If_None_Match=etag)
    assert again.status_code == 304 and again.content == b"" and "Last-Modified" not in again.headers
    assert again.headers["Etag"] == etag
    since = http.get("/openapi/v2", If_Modified_Since=js.headers["Last-Modified"])
    assert since.status_code == 304
    assert http.get("/openapi/v2", If_None_Match='"stale"').status_code == 200

    refused = http.get("/openapi/v2", Accept="text/html")
    assert refused.status_code == 406 and refused.content == b""
    preferred = http.get("/openapi/v2", Accept=f"application/json;q=0.5, {PROTO_TYPE}")
    assert preferred.headers["Content-Type"] == PROTO_TYPE

    zipped = http.get("/openapi/v2", Accept=PROTO_ACCEPT, Accept_Encoding="gzip")
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.raw.read()) == pb.content


def test_document_follows_crds(cluster: Cluster, http: Http):
    before = http.get("/openapi/v2", Accept=PROTO_ACCEPT)
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/gizmos.proto.example.com", "--timeout=30s")

    def published() -> requests.Response | None:
        r = http.get("/openapi/v2", Accept=PROTO_ACCEPT)
        names = {d.name for d in decode(r.content).definitions.additional_properties}
        return r if "com.example.proto.v1.Gizmo" in names else None

    after = cluster.wait_for(published, timeout=30, what="Gizmo in the protobuf document")
    assert after.headers["Etag"] != before.headers["Etag"]
    gizmo = named(decode(after.content).definitions.additional_properties, "com.example.proto.v1.Gizmo")
    spec = named(gizmo.properties.additional_properties, "spec")
    assert list(named(spec.properties.additional_properties, "size").type.value) == ["integer"]
    objs = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "proto.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"size": 3}}]}
    assert "gizmo.proto.example.com/g1 created" in cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(objs))


# ---- the mapping, without a server ------------------------------------------------------------------------
def test_gnostic_mapping_of_the_oneofs():
    spec = {
        "swagger": "2.0", "info": {"title": "t", "version": "1", "x-note": {"a": [1, True]}},
        "paths": {"/x": {"get": {"parameters": [{"$ref": "#/parameters/p"},
                                                {"name": "h", "in": "header", "type": "string"},
                                                {"name": "f", "in": "formData", "type": "file"}],
                                 "responses": {"200": {"description": "ok", "schema": {"type": "file"}},
                                               "default": {"$ref": "#/responses/r"}, "x-r": "v"}}},
                  "x-paths": 1},
        "definitions": {"D": {"type": ["string", "null"], "additionalProperties": False, "enum": ["a", ""],
                              "default": "a", "items": [{"type": "integer"}]}},
        "securityDefinitions": {"o": {"type": "oauth2", "flow": "password", "tokenUrl": "u",
                                      "scopes": {"read": "r"}}, "b": {"type": "basic"}},
        "security": [{"o": ["read"]}],
    }
    doc = openapi_proto.document(spec)
    assert yaml.safe_load(named(doc.info.vendor_extension, "x-note").yaml) == {"a": [1, True]}
    get = named(doc.paths.path, "/x").get
    assert get.parameters[0].json_reference._ref == "#/parameters/p"
    assert get.parameters[1].parameter.non_body_parameter.header_parameter_sub_schema.name == "h"
    assert get.parameters[2].parameter.non_body_parameter.form_data_parameter_sub_schema.type == "file"
    assert named(get.responses.response_code, "200").response.schema.HasField("file_schema")
    assert named(get.responses.response_code, "default").json_reference._ref == "#/responses/r"
    assert named(get.responses.vendor_extension, "x-r").yaml == "v\n"
    assert named(doc.paths.vendor_extension, "x-paths").yaml == "1\n"
    d = named(doc.definitions.additional_properties, "D")
    assert list(d.type.value) == ["string", "null"]
    assert d.additional_properties.WhichOneof("oneof") == "boolean" and not d.additional_properties.boolean
    assert [yaml.safe_load(e.yaml) for e in d.enum] == ["a", ""] and yaml.safe_load(d.default.yaml) == "a"
    assert d.items.schema[0].type.value == ["integer"]
    oauth = named(doc.security_definitions.additional_properties, "o").oauth2_password_security
    assert oauth.token_url == "u" and named(oauth.scopes.additional_properties, "read") == "r"
    assert named(doc.security_definitions.additional_properties, "b").HasField("basic_authentication_security")
    assert list(named(doc.security[0].additional_properties, "o").value) == ["read"]
    # what goes on the wire parses back to the same message
    again = openapi_proto.message_class("Document")()
    again.ParseFromString(doc.SerializeToString())
    assert again == doc


@pytest.mark.parametrize(("accept", "form"), [
    ("", "json"), ("*/*", "json"), ("application/*", "json"), ("application/json", "json"),
    (PROTO_ACCEPT, "proto"), (PROTO_TYPE, "proto"), (f"{PROTO_ACCEPT}, application/json", "proto"),
    (f"application/json;q=0.9, {PROTO_TYPE}", "proto"), (f"*/*, {PROTO_TYPE}", "proto"),
    ("application/yaml", None), ("text/html, application/xml;q=0.9", None),
])
def test_negotiation_follows_goautoneg(accept: str, form: str | None):
    assert openapi_proto.negotiate(accept) == form
