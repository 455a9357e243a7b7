"""A watch from a resourceVersion that has left the watch window answers as upstream's watch cache.

kube-apiserver answers such a watch with HTTP 200 and one ERROR event carrying a 410 Expired
Status ("too old resource version: X (Y)"); clients relist and watch again from the list's
resourceVersion. The window is shrunk with the hidden KUBELING_WATCH_WINDOW so a few writes push
a revision out of it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubeling.client.rest import ApiError, Client
from tests.conftest import Cluster
from tests.test_api_errors import CM, Http

WINDOW = 20


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("kubeling")) / "data")
    before = os.environ.get("KUBELING_WATCH_WINDOW")
    os.environ["KUBELING_WATCH_WINDOW"] = str(WINDOW)
    try:
        c.start()
    finally:
        if before is None:
            del os.environ["KUBELING_WATCH_WINDOW"]
        else:
            os.environ["KUBELING_WATCH_WINDOW"] = before
    try:
        yield c
    finally:
        c.stop()


def _old_rv(http: Http, prefix: str) -> str:
    """A resourceVersion that 3 windows of writes have pushed out of the watch window."""
    rv = http.req("GET", CM + "?limit=1").json()["metadata"]["resourceVersion"]
    for i in range(3 * WINDOW):
        assert http.req("POST", CM, json={"metadata": {"name": f"{prefix}-{i}"}}).status_code == 201
    return rv


def test_too_old_watch_is_an_error_event(small: Cluster) -> None:
    http = Http(small)
    rv = _old_rv(http, "raw")
    r = http.req("GET", f"{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=5", stream=True)
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith(f"too old resource version: {rv} (")
    # a current resourceVersion still watches normally
    now = http.req("GET", CM + "?limit=1").json()["metadata"]["resourceVersion"]
    r = http.req("GET", f"{CM}?watch=true&resourceVersion={now}&timeoutSeconds=2", stream=True)
    http.req("POST", CM, json={"metadata": {"name": "raw-after"}})
    events = [json.loads(line) for line in r.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "raw-after")]


def test_python_client_gets_410_and_relists(small: Cluster) -> None:
    http = Http(small)
    rv = _old_rv(http, "py")
    core = client.CoreV1Api(small.api_client())
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                      timeout_seconds=5):
            pass
    assert err.value.status == 410
    assert "too old resource version" in str(err.value.reason)
    # what an informer does next: relist, then watch from the list's resourceVersion
    listed = core.list_namespaced_config_map("default")
    assert {f"py-{i}" for i in range(3 * WINDOW)} <= {cm.metadata.name for cm in listed.items}
    w = watch.Watch()
    http.req("POST", CM, json={"metadata": {"name": "py-after"}})
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=listed.metadata.resource_version,
                       timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        w.stop()
    assert seen == [("ADDED", "py-after")]


def test_kubeling_client_raises_api_error_410(small: Cluster) -> None:
    http = Http(small)
    rv = _old_rv(http, "kl")

    async def go() -> ApiError:
        c = Client(small.client_config())
        try:
            with pytest.raises(ApiError) as err:
                async for _ in c.watch("configmaps", namespace="default", resource_version=rv, timeout_seconds=5):
                    pass
            return err.value
        finally:
            await c.close()

    e = asyncio.run(go())
    assert (e.code, e.reason) == (410, "Expired")


def test_loopback_watch_gets_the_410_as_an_event_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the in-process loopback (kubeling up's components) the watch events come as objects,
    the ERROR event too: the client raises the same ApiError 410 an HTTPS watch gives, and a current
    resourceVersion then watches normally (the object events are the store's, stamped)."""
    from kubeling.cli import runtime
    from tests.conftest import free_port

    monkeypatch.setenv("KUBELING_WATCH_WINDOW", str(WINDOW))

    async def go() -> None:
        data = tmp_path / "inproc"
        api = await runtime.start_apiserver(data_dir=data, port=free_port(), store_url="sqlite://")
        try:
            async with Client(runtime.client_config(data / "kubeconfig"), loopback=api.loopback()) as c:
                first = await c.create("configmaps", {"metadata": {"name": "lb-0"}}, "default")
                rv = first["metadata"]["resourceVersion"]
                for i in range(1, 3 * WINDOW):
                    await c.create("configmaps", {"metadata": {"name": f"lb-{i}"}}, "default")
                with pytest.raises(ApiError) as err:
                    async for _ in c.watch("configmaps", namespace="default", resource_version=rv, timeout_seconds=5):
                        pass
                assert (err.value.code, err.value.reason) == (410, "Expired")
                assert "too old resource version" in err.value.message
                listed = await c.list("configmaps", "default")
                after = await c.create("configmaps", {"metadata": {"name": "lb-after"}}, "default")
                async for ev in c.watch("configmaps", namespace="default",
                                        resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=5):
                    if ev["type"] != "BOOKMARK":
                        break
                assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "lb-after")
                assert ev["object"]["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
        finally:
            await api.stop()

    asyncio.run(go())
