"""Error paths and deletion semantics over raw HTTP, as upstream answers them."""

from __future__ import annotations

import base64
import json
import tempfile

import pytest
import requests
import yaml


class Http:
    def __init__(self, cluster) -> None:
        cfg = yaml.safe_load(cluster.kubeconfig.read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        self.ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)  # noqa: SIM115
        self.ca.write(ca)
        self.ca.flush()
        self.token = cfg["users"][0]["user"]["token"]
        self.s = requests.Session()
        self.s.verify = self.ca.name
        self.s.headers["Authorization"] = f"Bearer {self.token}"

    def req(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, self.base + path, timeout=30, verify=self.ca.name, **kw)


@pytest.fixture(scope="module")
def http(cluster):
    return Http(cluster)


CM = "/api/v1/namespaces/default/configmaps"


def status_of(r: requests.Response) -> dict:
    body = r.json()
    assert body["kind"] == "Status" and body["code"] == r.status_code
    return body


def test_bad_bodies(http):
    r = http.req("POST", CM, data=b'{"metadata": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and status_of(r)["reason"] == "BadRequest"
    r = http.req("POST", CM, data=b"metadata: [\n", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    r = http.req("POST", CM, data=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fromyaml}\n",
                 headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201
    r = http.req("PATCH", CM + "/fromyaml", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and status_of(r)["reason"] == "UnsupportedMediaType"
    big = json.dumps({"metadata": {"name": "big"}, "data": {"x": "a" * (3 * 1024 * 1024 + 10)}})
    r = http.req("POST", CM, data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and status_of(r)["reason"] == "RequestEntityTooLarge"
    r = http.req("GET", "/api/v1/namespaces/default/nosuchthings")
    assert r.status_code == 404 and status_of(r)["reason"] == "NotFound"
    r = http.req("GET", "/apis/nosuch.group/v1/things")
    assert r.status_code == 404


def test_authentication(http):
    for path in ("/livez", "/readyz", "/healthz", "/version"):
        assert requests.get(http.base + path, verify=http.ca.name, timeout=30).status_code == 200
    r = requests.get(http.base + "/api/v1/namespaces", verify=http.ca.name, timeout=30)
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    r = requests.get(http.base + "/api/v1/namespaces", verify=http.ca.name, timeout=30,
                     headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_conflict_and_gone(http):
    r = http.req("POST", CM, json={"metadata": {"name": "cf"}, "data": {"a": "1"}})
    obj = r.json()
    assert http.req("PUT", CM + "/cf", json={**obj, "data": {"a": "2"}}).status_code == 200
    r = http.req("PUT", CM + "/cf", json={**obj, "data": {"a": "3"}})
    assert r.status_code == 409
    assert status_of(r)["message"] == ('Operation cannot be fulfilled on configmaps "cf": the object has been '
                                       "modified; please apply your changes to the latest version and try again")
    r = http.req("GET", CM + "?watch=true&resourceVersion=notanumber&timeoutSeconds=1")
    assert r.status_code == 400
    # 410 Gone needs a resourceVersion older than the 10,000-event watch window: not produced here
    # (it would take 10k writes); kubeling/storage's own tests cover the window


def test_streaming_list(http):
    http.req("POST", CM, json={"metadata": {"name": "stream1", "labels": {"s": "1"}}})
    r = http.req("GET", CM + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                 "&allowWatchBookmarks=true&labelSelector=s%3D1&timeoutSeconds=2", stream=True)
    events = []
    for line in r.iter_lines():
        if line:
            events.append(json.loads(line))
            if events[-1]["type"] == "BOOKMARK":
                break
    r.close()
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["name"] == "stream1"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    r = http.req("GET", CM + "?watch=true&sendInitialEvents=true")
    assert r.status_code == 422


def test_discovery_and_openapi(http):
    r = http.req("GET", "/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
    assert r.status_code == 200 and r.json()["kind"] == "APIGroupDiscoveryList"
    assert "Accept" in r.headers.get("Vary", "")
    groups = {g["metadata"]["name"] for g in r.json()["items"]}
    assert {"apps", "coordination.k8s.io", "events.k8s.io"} <= groups
    r = http.req("GET", "/api", headers={"Accept": "application/json"})
    assert r.json()["kind"] == "APIVersions"
    r = http.req("GET", "/openapi/v3")
    paths = r.json()["paths"]
    assert "apis/apps/v1" in paths
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    r = http.req("GET", url)
    assert r.status_code == 200 and "io.k8s.api.apps.v1.DaemonSet" in r.json()["components"]["schemas"]
    assert "immutable" in r.headers.get("Cache-Control", "")
    proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    r = http.req("GET", "/openapi/v2", headers={"Accept": proto})
    assert r.status_code == 200 and r.content[:1] != b"{"
    assert r.headers["Content-Type"].startswith("application/com.github.proto-openapi.spec.v2")
    r = http.req("GET", "/openapi/v2", headers={"Accept": "application/yaml"})
    assert r.status_code == 406
    r = http.req("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["swagger"] == "2.0"


def test_finalizers_and_graceful_pod_deletion(http, cluster):
    r = http.req("POST", CM, json={"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}})
    assert r.status_code == 201
    r = http.req("DELETE", CM + "/fin")
    assert r.status_code in (200, 202)
    obj = http.req("GET", CM + "/fin").json()
    assert obj["metadata"]["deletionTimestamp"]
    r = http.req("PATCH", CM + "/fin", json={"metadata": {"finalizers": None}},
                 headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    assert http.req("GET", CM + "/fin").status_code == 404
    pods = "/api/v1/namespaces/default/pods"
    pod = {"metadata": {"name": "gp"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert http.req("POST", pods, json=pod).status_code == 201
    assert http.req("DELETE", pods + "/gp").status_code == 200  # unbound: gone at once
    assert http.req("GET", pods + "/gp").status_code == 404
    bound = {**pod, "metadata": {"name": "gp2"}, "spec": {**pod["spec"], "nodeName": "ghost"}}
    assert http.req("POST", pods, json=bound).status_code == 201
    r = http.req("DELETE", pods + "/gp2", json={"gracePeriodSeconds": 30})
    assert r.status_code == 200
    meta = http.req("GET", pods + "/gp2").json()["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 30
    assert http.req("DELETE", pods + "/gp2", json={"gracePeriodSeconds": 0}).status_code == 200
    assert http.req("GET", pods + "/gp2").status_code == 404


def test_propagation_policies(http, cluster):
    ds_path = "/apis/apps/v1/namespaces/default/daemonsets"
    cr_path = "/apis/apps/v1/namespaces/default/controllerrevisions"

    def make(name: str) -> str:
        ds = {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"a": name}}, "template": {
            "metadata": {"labels": {"a": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
        uid = http.req("POST", ds_path, json=ds).json()["metadata"]["uid"]
        owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": uid, "controller": True}
        http.req("POST", cr_path, json={"metadata": {"name": name + "-dep", "ownerReferences": [owner]},
                                        "revision": 99})
        return uid

    make("orph")
    r = http.req("DELETE", ds_path + "/orph", json={"propagationPolicy": "Orphan"})
    assert r.status_code in (200, 202)
    cluster.wait_for(lambda: http.req("GET", ds_path + "/orph").status_code == 404, what="orphaned owner gone")
    cluster.wait_for(lambda: not http.req("GET", cr_path + "/orph-dep").json()["metadata"].get("ownerReferences"),
                     what="ownerReference removed")
    make("bg")
    http.req("DELETE", ds_path + "/bg", json={"propagationPolicy": "Background"})
    cluster.wait_for(lambda: http.req("GET", cr_path + "/bg-dep").status_code == 404, what="dependent collected")
    make("fg")
    r = http.req("DELETE", ds_path + "/fg", json={"propagationPolicy": "Foreground"})
    assert r.status_code in (200, 202)
    cluster.wait_for(lambda: http.req("GET", ds_path + "/fg").status_code == 404, what="foreground owner gone")
    assert http.req("GET", cr_path + "/fg-dep").status_code == 404


def test_namespace_deletion(http, cluster):
    assert http.req("POST", "/api/v1/namespaces", json={"metadata": {"name": "doomed"}}).status_code == 201
    cms = "/api/v1/namespaces/doomed/configmaps"
    cluster.wait_for(lambda: http.req("GET", "/api/v1/namespaces/doomed/serviceaccounts/default").status_code == 200,
                     what="default service account")
    assert http.req("POST", cms, json={"metadata": {"name": "a"}, "data": {"k": "v"}}).status_code == 201
    # hold the namespace in Terminating with a finalizer on its content
    http.req("POST", cms, json={"metadata": {"name": "held", "finalizers": ["example.com/x"]}})
    r = http.req("DELETE", "/api/v1/namespaces/doomed")
    assert r.status_code in (200, 202)
    r = http.req("POST", cms, json={"metadata": {"name": "late"}})
    assert r.status_code == 403
    assert status_of(r)["message"] == ('configmaps "late" is forbidden: unable to create new content in namespace '
                                       "doomed because it is being terminated")
    cluster.wait_for(lambda: http.req("GET", cms + "/a").status_code == 404, what="namespace content removed")
    http.req("PATCH", cms + "/held", json={"metadata": {"finalizers": None}},
             headers={"Content-Type": "application/merge-patch+json"})
    cluster.wait_for(lambda: http.req("GET", "/api/v1/namespaces/doomed").status_code == 404,
                     what="namespace removed")


def test_bodies_between_one_and_three_mib_are_accepted(http):
    """aiohttp's own request limit is 1 MiB; the server's is upstream's 3 MiB (413 above, tested above).
    (A ConfigMap holds at most 1 MiB of data: the body is padded with JSON whitespace.)"""
    body = json.dumps({"metadata": {"name": "two-mib"}, "data": {"x": "a"}}) + " " * (2 * 1024 * 1024)
    r = http.req("POST", CM, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert http.req("DELETE", CM + "/two-mib").status_code == 200


def _raw_tls(http):  # type: ignore[no-untyped-def]
    import socket
    import ssl
    from urllib.parse import urlsplit

    url = urlsplit(http.base)
    ctx = ssl.create_default_context(cafile=http.ca.name)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    return ctx.wrap_socket(sock, server_hostname=url.hostname)


def _read_head(conn) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_expect_100_continue_is_answered_before_the_body(http):
    """curl and others send large bodies only after "100 Continue" (or a timeout): the server says it
    as soon as the headers arrive, before reading the body."""
    body = json.dumps({"metadata": {"name": "expecting"}, "data": {"k": "v"}}).encode()
    with _raw_tls(http) as conn:
        conn.sendall(f"POST {CM} HTTP/1.1\r\nHost: kubeling\r\nAuthorization: Bearer {http.token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        interim = _read_head(conn)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        conn.sendall(body)
        rest = interim.split(b"\r\n\r\n", 1)[1]
        final = rest if b"\r\n\r\n" in rest else rest + _read_head(conn)
        assert final.startswith(b"HTTP/1.1 201"), final
    assert http.req("DELETE", CM + "/expecting").status_code == 200


def test_head_of_exact_paths(http):
    r = http.req("HEAD", "/version")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.content == b""


def _chunked_post(http, body: bytes, pieces: int) -> bytes:  # type: ignore[no-untyped-def]
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length) in ``pieces`` chunks, sent
    one by one; the response head and what came with it."""
    size = -(-len(body) // pieces)
    with _raw_tls(http) as conn:
        conn.sendall(f"POST {CM} HTTP/1.1\r\nHost: kubeling\r\nAuthorization: Bearer {http.token}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for i in range(0, len(body), size):
            piece = body[i:i + size]
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")
        return _read_head(conn)


def test_chunked_bodies_are_read_whole_and_held_to_three_mib(http):
    """A body without Content-Length (chunked, as streaming clients send it) is read to its end
    whether it came at once or in pieces, and refused with 413 past 3 MiB as a sized one is."""
    small = json.dumps({"metadata": {"name": "chunked"}, "data": {"k": "v" * 5000}}).encode()
    for pieces, name in ((1, b"chunked"), (7, b"chunked-in-pieces")):
        head = _chunked_post(http, small.replace(b"chunked", name), pieces)
        assert head.startswith(b"HTTP/1.1 201"), head
        r = http.req("GET", CM + "/" + name.decode())
        assert r.status_code == 200 and r.json()["data"]["k"] == "v" * 5000
    big = json.dumps({"metadata": {"name": "big-chunked"}, "data": {"x": "a"}}).encode() + b" " * (3 * 1024 * 1024)
    head = _chunked_post(http, big, 48)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert http.req("GET", CM + "/big-chunked").status_code == 404
