"""Hypothesis against the live server: selectors, the three patch types and malformed bodies
never produce a 500 (nor kill the server)."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_api_errors import Http

CM = "/api/v1/namespaces/default/configmaps"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

label_chars = st.text(alphabet="abcxyz019-._/=!,() in notin", min_size=0, max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def http(cluster):
    h = Http(cluster)
    r = h.req("POST", CM, json={"metadata": {"name": "prop", "labels": {"a": "b"}}, "data": {"k": "v"}})
    assert r.status_code in (201, 409)
    return h


def _ok(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        body = r.json()
        assert body["kind"] == "Status" and body["code"] == r.status_code


@SETTINGS
@given(sel=label_chars)
def test_label_selectors(http, sel):
    r = http.req("GET", CM + "?labelSelector=" + urllib.parse.quote(sel))
    _ok(r)
    if r.status_code == 200:
        assert r.json()["kind"] == "ConfigMapList"


@SETTINGS
@given(field=st.sampled_from(["metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "bogus",
                              ""]),
       op=st.sampled_from(["=", "==", "!=", "", "=="]), value=st.text(alphabet="ab-.,=!x", max_size=10))
def test_field_selectors(http, field, op, value):
    for path in (CM, "/api/v1/pods"):
        _ok(http.req("GET", path + "?fieldSelector=" + urllib.parse.quote(field + op + value)))


@SETTINGS
@given(body=json_values, ctype=st.sampled_from(["application/merge-patch+json", "application/json-patch+json",
                                                "application/strategic-merge-patch+json"]))
def test_patches_never_500(http, body, ctype):
    r = http.req("PATCH", CM + "/prop", data=json.dumps(body), headers={"Content-Type": ctype})
    _ok(r)


ops = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bad"]),
                             "path": st.sampled_from(["/data/k", "/data/new", "/metadata/labels/a", "/metadata",
                                                      "/x/y", "", "/data/~1", "/metadata/name"])},
                            optional={"value": json_values, "from": st.sampled_from(["/data/k", "/nope"])})


@SETTINGS
@given(patch=st.lists(ops, max_size=4))
def test_json_patch_ops(http, patch):
    _ok(http.req("PATCH", CM + "/prop", data=json.dumps(patch),
                 headers={"Content-Type": "application/json-patch+json"}))


@SETTINGS
@given(raw=st.binary(max_size=200), ctype=st.sampled_from(["application/json", "application/yaml",
                                                           "application/vnd.kubernetes.protobuf"]),
       method=st.sampled_from(["POST", "PUT"]))
def test_malformed_bodies(http, raw, ctype, method):
    path = CM if method == "POST" else CM + "/prop"
    _ok(http.req(method, path, data=raw, headers={"Content-Type": ctype}))


@SETTINGS
@given(obj=st.dictionaries(st.sampled_from(["metadata", "data", "spec", "kind", "apiVersion", "binaryData",
                                            "immutable"]), json_values, max_size=5))
def test_structured_garbage(http, obj):
    _ok(http.req("POST", CM, data=json.dumps(obj), headers={"Content-Type": "application/json"}))
    assert http.req("GET", "/readyz").status_code == 200
