"""Lists and watch frames made from the stored bytes (no decode, resourceVersion spliced in) must
carry exactly the objects the decoding path serves: compared here over HTTP, on SQLite and at an
older revision (read from the log, not the watch cache)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.conftest import Cluster


def _raw(c: Cluster, path: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", "--raw", path))


def test_raw_lists_equal_decoded_lists(cluster: Cluster) -> None:
    pods = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"raw-{i}", "namespace": "default", "labels": {"app": "raw"},
                          "annotations": {"html": "<a href='x'>&</a>", "sep": "\u2028"}},
             "spec": {"containers": [{"name": "c", "image": "nginx"}]}} for i in range(7)]
    cluster.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    base = "/api/v1/namespaces/default/pods"
    plain = _raw(cluster, base)  # no selector: served from the stored bytes
    decoded = _raw(cluster, base + "?labelSelector=app%3Draw")  # a selector: served from decoded objects
    assert plain["kind"] == "PodList" and plain["apiVersion"] == "v1"
    mine = [p for p in plain["items"] if p["metadata"]["name"].startswith("raw-")]
    assert len(mine) == 7 and mine == decoded["items"]
    assert mine[0]["metadata"]["annotations"] == {"html": "<a href='x'>&</a>", "sep": "\u2028"}
    text = cluster.kubectl("get", "--raw", base)
    assert "\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e" in text and "\\u2028" in text  # Go's escapes

    # pages: limit and continue, with remainingItemCount as upstream
    page1 = _raw(cluster, base + "?limit=3")
    assert len(page1["items"]) == 3 and page1["metadata"]["remainingItemCount"] == len(plain["items"]) - 3
    page2 = _raw(cluster, f"{base}?limit=100&continue={page1['metadata']['continue']}")
    assert page1["items"] + page2["items"] == plain["items"]

    # an older revision comes from the log, not the watch cache
    rv = plain["metadata"]["resourceVersion"]
    cluster.kubectl("delete", "pod", "raw-0", "--wait=false")
    cluster.kubectl("label", "pod", "raw-1", "extra=yes")
    old = _raw(cluster, f"{base}?resourceVersion={rv}&resourceVersionMatch=Exact")
    assert old["items"] == plain["items"] and old["metadata"]["resourceVersion"] == rv
    now = _raw(cluster, base)
    names = [p["metadata"]["name"] for p in now["items"]]
    assert "raw-0" not in names or any(p["metadata"].get("deletionTimestamp") for p in now["items"]
                                       if p["metadata"]["name"] == "raw-0")
    assert next(p for p in now["items"] if p["metadata"]["name"] == "raw-1")["metadata"]["labels"]["extra"] == "yes"


def test_kubectl_get_json_and_watch_show_the_stored_object(cluster: Cluster) -> None:
    cluster.kubectl("create", "configmap", "raw-cm", "--from-literal=k=<v&>")
    got = json.loads(cluster.kubectl("get", "configmap", "raw-cm", "-o", "json"))
    # a GET is served from the stored bytes; a list with a selector from decoded objects
    listed = json.loads(cluster.kubectl("get", "configmaps", "--field-selector", "metadata.name=raw-cm", "-o", "json"))
    item = next(i for i in listed["items"] if i["metadata"]["name"] == "raw-cm")
    assert item == got and got["data"] == {"k": "<v&>"}
    assert got["metadata"]["resourceVersion"] and got["metadata"]["uid"]
    # a watch replays the object as its first event: same object, same resourceVersion
    out = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
                          "&fieldSelector=metadata.name%3Draw-cm")
    first = json.loads(out.splitlines()[0])
    assert first["type"] == "ADDED" and first["object"] == got


def test_watch_frames_from_stored_bytes_equal_the_object(cluster: Cluster) -> None:
    cluster.kubectl("create", "configmap", "raw-watch", "--from-literal=k=<v&>")
    rv = json.loads(cluster.kubectl("get", "configmap", "raw-watch", "-o", "json"))["metadata"]["resourceVersion"]
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "--raw",
         f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5"],
        stdout=subprocess.PIPE, text=True)
    try:
        cluster.kubectl("label", "configmap", "raw-watch", "step=one")
        after = json.loads(cluster.kubectl("get", "configmap", "raw-watch", "-o", "json"))
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    frames = [json.loads(line) for line in out.splitlines() if line.strip()]
    mine = [f for f in frames if f["object"]["metadata"]["name"] == "raw-watch"]
    assert [f["type"] for f in mine] == ["MODIFIED"] and mine[0]["object"] == after
    assert "\\u003cv\\u0026\\u003e" in out  # Go's escapes in the frame


def test_a_yaml_body_keeps_unquoted_timestamps_as_strings(cluster: Cluster) -> None:
    """As upstream's YAML-to-JSON: an unquoted timestamp is the string it reads as, not a date."""
    import asyncio

    from kubeling.client.rest import Client

    body = (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raw-yaml\n"
            b"  annotations:\n    since: 2024-01-01T00:00:00Z\n"
            b"data:\n  day: 2024-01-02\n  at: 2024-01-02 10:00:00\n")

    async def post() -> Any:
        async with Client(cluster.client_config()) as c:
            return await c.request("POST", "/api/v1/namespaces/default/configmaps", body=body,
                                   content_type="application/yaml")

    created = asyncio.run(post())
    assert created["metadata"]["annotations"] == {"since": "2024-01-01T00:00:00Z"}
    assert created["data"] == {"day": "2024-01-02", "at": "2024-01-02 10:00:00"}
    got = json.loads(cluster.kubectl("get", "configmap", "raw-yaml", "-o", "json"))
    assert got["data"] == created["data"] and got["metadata"]["annotations"] == created["metadata"]["annotations"]
