"""Unit tests of kubeling.client without a kubeling server: work queue, informer (against a fake
client and a tiny fake HTTP server), REST paths and errors, kubeconfig, events, leader election."""

from __future__ import annotations

import asyncio
import base64
import copy as _copy
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from kubeling.client import rest
from kubeling.client.config import ClientConfig
from kubeling.client.controller import run_controller
from kubeling.client.events import EventRecorder
from kubeling.client.informer import Informer, InformerFactory, copy, object_key
from kubeling.client.leaderelection import LeaderElector
from kubeling.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found
from kubeling.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ShutDown,
    WorkQueue,
)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- work queue ------------------------------------------------------------------------------------

def test_queue_dedups_and_keeps_order():
    async def main():
        q = WorkQueue("t")
        for k in ["a", "b", "a", "c", "b"]:
            q.add(k)
        assert len(q) == 3
        assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    run(main())


def test_key_added_while_processing_waits_for_done():
    async def main():
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        assert key == "a"
        q.add("a")
        q.add("a")
        assert len(q) == 0  # held back: a worker is on it
        q.add("b")
        assert await q.get() == "b"
        q.done("a")
        assert len(q) == 1
        assert await q.get() == "a"
        q.done("a")
        q.done("b")
        assert len(q) == 0
    run(main())


def test_done_without_readd_does_not_requeue():
    async def main():
        q = WorkQueue()
        q.add("a")
        await q.get()
        q.done("a")
        assert len(q) == 0
        q.add("a")
        assert len(q) == 1
    run(main())


def test_two_workers_never_hold_same_key():
    async def main():
        q = WorkQueue()
        in_flight: set[str] = set()
        processed: list[str] = []
        overlap = []

        async def sync(key):
            if key in in_flight:
                overlap.append(key)
            in_flight.add(key)
            await asyncio.sleep(0)
            processed.append(key)
            # re-adding the key being processed must not hand it to another worker now
            if processed.count(key) < 3:
                q.add(key)
            await asyncio.sleep(0)
            in_flight.discard(key)

        task = asyncio.create_task(run_controller("t", q, sync, workers=4))
        for k in ["x", "y"]:
            q.add(k)
        while processed.count("x") < 3 or processed.count("y") < 3 or len(q):
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert overlap == []
        assert processed.count("x") == 3 and processed.count("y") == 3
    run(main())


def test_exponential_backoff_5ms_doubling_capped_at_1000s():
    rl = ItemExponentialFailureRateLimiter()
    delays = [rl.when("k") for _ in range(30)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert all(b == min(a * 2, 1000.0) for a, b in zip(delays, delays[1:], strict=False))
    assert delays[-1] == 1000.0 and max(delays) == 1000.0
    assert rl.num_requeues("k") == 30
    assert rl.when("other") == 0.005
    rl.forget("k")
    assert rl.num_requeues("k") == 0 and rl.when("k") == 0.005
    for _ in range(200):
        assert rl.when("big") <= 1000.0


def test_bucket_limiter_allows_burst_then_paces():
    now = [0.0]
    rl = BucketRateLimiter(10, 100, clock=lambda: now[0])
    assert all(rl.when(i) == 0 for i in range(100))
    assert rl.when("x") == pytest.approx(0.1)
    assert rl.when("y") == pytest.approx(0.2)
    now[0] += 1.0  # 10 tokens back, 2 owed
    assert rl.when("z") == 0


def test_default_queue_rate_limited_requeue_and_forget():
    async def main():
        q = WorkQueue()
        q.add_rate_limited("k")
        q.add_rate_limited("k")
        assert q.num_requeues("k") == 2
        assert await q.get() == "k"
        q.done("k")
        q.forget("k")
        assert q.num_requeues("k") == 0
    run(main())


def test_add_after_delays_and_dedups_earliest_wins():
    async def main():
        q = WorkQueue()
        q.add_after("a", 3600)
        q.add_after("a", 0.01)  # earlier: replaces
        q.add_after("a", 7200)  # later: ignored
        assert len(q) == 0 and q.pending_delayed() == 1
        assert await q.get() == "a"
        assert q.pending_delayed() == 0
        q.done("a")
        q.add("b")
        q.add_after("b", 0)  # immediate, deduped with the queued one
        assert len(q) == 1
    run(main())


def test_shutdown_drains_then_raises_and_wakes_waiters():
    async def main():
        q = WorkQueue()
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.shutdown()
        with pytest.raises(ShutDown):
            await waiter
        q2 = WorkQueue()
        q2.add("a")
        q2.shutdown()
        q2.add("b")  # ignored
        q2.add_after("c", 0.01)  # ignored
        assert await q2.get() == "a"
        with pytest.raises(ShutDown):
            await q2.get()
    run(main())


def test_cancelled_getter_does_not_lose_wakeup():
    async def main():
        q = WorkQueue()
        g1 = asyncio.create_task(q.get())
        g2 = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("a")  # wakes g1 ...
        g1.cancel()  # ... which is cancelled before it runs
        assert await asyncio.wait_for(g2, 5) == "a"
    run(main())


def test_run_controller_retries_failures_then_forgets():
    async def main():
        q = WorkQueue()
        attempts: list[str] = []

        async def sync(key):
            attempts.append(key)
            if len(attempts) < 3:
                raise RuntimeError("boom")

        task = asyncio.create_task(run_controller("t", q, sync, workers=2))
        q.add("k")
        while len(attempts) < 3 or q.is_processing("k"):
            await asyncio.sleep(0.005)
        assert q.num_requeues("k") == 0  # forgotten after the success
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert attempts == ["k", "k", "k"]
        assert q.shutting_down
    run(main())


# -- fake API (in memory) --------------------------------------------------------------------------

class FakeApi:
    """Enough of Client for informers, events and leases, in memory, with resourceVersions."""

    def __init__(self):
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.rv = 100
        self.calls: list[tuple[str, ...]] = []
        self.watch_scripts: list[list[Any]] = []  # each: events, or an exception to raise
        self.watch_rvs: list[str | None] = []

    def _next_rv(self):
        self.rv += 1
        return str(self.rv)

    def put(self, resource, obj):
        obj = _copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        return obj

    async def list_all(self, resource, namespace=None, **_):
        items = [_copy.deepcopy(o) for (r, ns, _n), o in self.objects.items()
                 if r == resource and (namespace is None or ns == namespace)]
        for o in items:  # list items have no kind on the wire
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.rv)},
                "items": items}

    async def watch(self, resource, namespace=None, resource_version=None, **_):
        self.watch_rvs.append(resource_version)
        script = self.watch_scripts.pop(0) if self.watch_scripts else None
        if script is None:
            await asyncio.Event().wait()  # block like an idle watch
        for item in script:
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                item()
                continue
            yield item

    async def get(self, resource, name, namespace=None, **_):
        self.calls.append(("get", resource, name))
        try:
            return _copy.deepcopy(self.objects[(resource, namespace, name)])
        except KeyError:
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found') from None

    async def create(self, resource, obj, namespace=None, **_):
        self.calls.append(("create", resource, obj["metadata"]["name"]))
        if (resource, namespace, obj["metadata"]["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", "exists")
        obj = _copy.deepcopy(obj)
        obj["metadata"]["namespace"] = namespace
        return self.put(resource, obj)

    async def update(self, resource, obj, namespace=None, **_):
        self.calls.append(("update", resource, obj["metadata"]["name"]))
        cur = self.objects.get((resource, namespace, obj["metadata"]["name"]))
        if cur is None:
            raise ApiError(404, "NotFound", "gone")
        if obj["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        obj = _copy.deepcopy(obj)
        obj["metadata"]["namespace"] = namespace
        return self.put(resource, obj)

    async def patch(self, resource, name, body, namespace=None, patch_type="merge", **_):
        self.calls.append(("patch", resource, name, orjson.dumps(body).decode()))
        cur = self.objects.get((resource, namespace, name))
        if cur is None:
            raise ApiError(404, "NotFound", "gone")
        cur.update(body)
        return self.put(resource, cur)


def pod(name, ns="default", rv=None, node=None):
    meta = {"name": name, "namespace": ns, "uid": f"uid-{name}"}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node} if node else {}}


def by_node(obj):
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


# -- informer ---------------------------------------------------------------------------------------

def test_informer_list_watch_cache_handlers_and_indexes():
    async def main():
        api = FakeApi()
        api.put("pods", pod("a", node="n1"))
        api.put("pods", pod("b", ns="kube-system", node="n1"))
        events: list[tuple[str, str, str | None]] = []
        inf = Informer(api, "pods", indexers={"node": by_node})
        inf.add_handler(lambda t, o, old: events.append((t, object_key(o), old and old["metadata"]["name"])))
        api.watch_scripts = [[
            {"type": "ADDED", "object": pod("c", node="n2", rv="201")},
            {"type": "MODIFIED", "object": pod("a", node="n2", rv="202")},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "250"}}},
            {"type": "DELETED", "object": pod("b", ns="kube-system", node="n1", rv="260")},
        ]]
        task = asyncio.create_task(inf.run(_iterations=1))
        await inf.wait_synced()
        await task
        assert api.watch_rvs == ["102"]  # watched from the list's resourceVersion
        assert sorted(events[:2]) == [("ADDED", "default/a", None), ("ADDED", "kube-system/b", None)]
        assert events[2:] == [("ADDED", "default/c", None), ("MODIFIED", "default/a", "a"),
                              ("DELETED", "kube-system/b", "b")]
        assert inf.resource_version == "260"
        assert sorted(object_key(o) for o in inf.list()) == ["default/a", "default/c"]
        assert inf.list("kube-system") == []
        assert [o["metadata"]["name"] for o in inf.by_index("node", "n2")] == ["a", "c"] or \
            sorted(o["metadata"]["name"] for o in inf.by_index("node", "n2")) == ["a", "c"]
        assert inf.by_index("node", "n1") == []
        assert inf.get("a", "default")["spec"]["nodeName"] == "n2"
        # listed items get their kind back
        assert inf.get("a", "default")["kind"] == "Pod"
        late: list[str] = []
        inf.add_handler(lambda t, o, old: late.append(t))
        assert late == ["ADDED", "ADDED"]
    run(main())


def test_informer_handlers_that_fail_or_are_coroutines_do_not_stop_the_others(caplog):
    """Every handler gets every event: one that raises is logged, a coroutine function (which would
    never run) is refused with a log line, and the handlers after them are still called."""
    async def main():
        api = FakeApi()
        inf = Informer(api, "pods", indexers={"node": by_node})
        seen: list[str] = []

        def broken(t, o, old):
            raise ValueError("boom")

        async def awaits(t, o, old):
            seen.append("never")

        for fn in (broken, awaits, lambda t, o, old: seen.append(f"{t} {object_key(o)}")):
            inf.add_handler(fn)
        inf.apply_event({"type": "ADDED", "object": pod("a", node="n1", rv="5")})
        inf.apply_event({"type": "MODIFIED", "object": pod("a", node="n2", rv="6")})
        assert seen == ["ADDED default/a", "MODIFIED default/a"]
        assert [o["metadata"]["name"] for o in inf.by_index("node", "n2")] == ["a"]
        assert inf.by_index("node", "n1") == []
    with caplog.at_level(logging.ERROR, logger="kubeling.client.informer"):
        run(main())
    logged = [r.getMessage() for r in caplog.records]
    assert sum("failed on ADDED default/a" in m for m in logged) == 2, logged
    assert any("must be plain functions" in (r.exc_text or "") or "must be plain functions" in str(r.exc_info)
               for r in caplog.records), logged


def test_informer_410_relists_and_emits_diff():
    async def main():
        api = FakeApi()
        api.put("pods", pod("keep"))
        api.put("pods", pod("change"))
        api.put("pods", pod("remove"))
        inf = Informer(api, "pods")
        seen: list[tuple[str, str]] = []
        inf.add_handler(lambda t, o, old: seen.append((t, o["metadata"]["name"])))

        def mutate():  # changes the informer does not see on its watch
            del api.objects[("pods", "default", "remove")]
            api.put("pods", pod("change", node="n9"))
            api.put("pods", pod("new"))

        api.watch_scripts = [[mutate, ApiError(410, "Expired", "too old resource version")],
                             [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(api.rv + 3)}}}]]
        await inf.run(_iterations=2)
        assert sorted(seen[3:]) == [("ADDED", "new"), ("DELETED", "remove"), ("MODIFIED", "change")]
        assert sorted(o["metadata"]["name"] for o in inf.list()) == ["change", "keep", "new"]
        assert api.watch_rvs == ["103", str(api.rv)]
    run(main())


def test_informer_watch_end_rewatches_from_last_rv_and_connection_errors_back_off():
    async def main():
        api = FakeApi()
        api.put("pods", pod("a"))
        inf = Informer(api, "pods")
        api.watch_scripts = [
            [{"type": "MODIFIED", "object": pod("a", rv="300")}],   # ends normally
            [OSError("connection refused")],
            [{"type": "DELETED", "object": pod("a", rv="301")}],
        ]
        await inf.run(_iterations=3)
        assert api.watch_rvs == ["101", "300", "300"]
        assert len(inf) == 0
    run(main())


def test_informer_resync_redelivers_modified():
    async def main():
        api = FakeApi()
        api.put("pods", pod("a"))
        inf = Informer(api, "pods", resync_period=0.01)
        got = []
        inf.add_handler(lambda t, o, old: got.append((t, o is old)))
        task = asyncio.create_task(inf.run())
        while ("MODIFIED", True) not in got:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert got[0] == ("ADDED", False)
    run(main())


def test_informer_factory_shares_and_copy_is_deep():
    async def main():
        api = FakeApi()
        api.put("pods", pod("a"))
        f = InformerFactory(api)
        i1 = f.informer("pods")
        assert f.informer("pods") is i1
        assert f.informer("pods", namespace="x") is not i1
        f.start()
        await f.wait_synced()
        i3 = f.informer("pods", label_selector="a=b")
        await f.start()  # awaitable too; starts the informer created later
        await i3.wait_synced()
        await f.stop()
        obj = i1.get("a", "default")
        c = copy(obj)
        c["metadata"]["name"] = "zzz"
        assert obj["metadata"]["name"] == "a"
    run(main())


# -- REST over a fake HTTP server ----------------------------------------------------------------

def test_paths_and_versions():
    assert rest.resource_path("pods", "default", "p1") == "/api/v1/namespaces/default/pods/p1"
    assert rest.resource_path("nodes") == "/api/v1/nodes"
    assert rest.resource_path("daemonsets.apps", "kube-system") == "/apis/apps/v1/namespaces/kube-system/daemonsets"
    assert rest.resource_path("leases.coordination.k8s.io", "ns", "l", None) == \
        "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"
    assert rest.resource_path("events.events.k8s.io") == "/apis/events.k8s.io/v1/events"
    assert rest.resource_path("horizontalpodautoscalers.autoscaling") == \
        "/apis/autoscaling/v2/horizontalpodautoscalers"
    assert rest.resource_path("horizontalpodautoscalers.v1.autoscaling", "d") == \
        "/apis/autoscaling/v1/namespaces/d/horizontalpodautoscalers"
    assert rest.resource_path("pods", "d", "p", "status") == "/api/v1/namespaces/d/pods/p/status"
    assert rest.resource_path("widgets.v1beta1.example.com") == "/apis/example.com/v1beta1/widgets"


def _status(code, reason, message):
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


async def _fake_server(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def test_rest_errors_headers_and_watch_frames():
    seen: list[Any] = []

    async def handler(request: web.Request):
        seen.append((request.method, request.path_qs, request.headers.get("Authorization"),
                     request.headers.get("User-Agent"), request.headers.get("Content-Type")))
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            frames = [{"type": "ADDED", "object": pod("a", rv="5")},
                      {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "6"}}},
                      {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                   "message": "too old resource version: 1 (5)",
                                                   "reason": "Expired", "code": 410}}]
            data = b"".join(orjson.dumps(f) + b"\n" for f in frames)
            for i in range(0, len(data), 7):  # split frames across chunks
                await resp.write(data[i:i + 7])
            return resp
        if request.path.endswith("/missing"):
            return _status(404, "NotFound", 'pods "missing" not found')
        if request.method == "POST":
            return _status(409, "AlreadyExists", 'pods "a" already exists')
        if request.method == "PUT":
            return _status(409, "Conflict", "the object has been modified")
        if request.method == "PATCH":
            return web.json_response(await request.json())
        if request.method == "DELETE":
            return web.json_response(await request.json())
        return web.Response(status=500, text="plain failure")

    async def main():
        runner, url = await _fake_server(handler)
        client = Client(ClientConfig(server=url, token="tok"), component="test")
        try:
            with pytest.raises(ApiError) as ei:
                await client.get("pods", "missing", "default")
            assert is_not_found(ei.value) and ei.value.reason == "NotFound"
            assert ei.value.message == 'pods "missing" not found'
            assert ei.value.status["code"] == 404
            with pytest.raises(ApiError) as ei:
                await client.create("pods", pod("a"))
            assert is_already_exists(ei.value) and not is_conflict(ei.value)
            with pytest.raises(ApiError) as ei:
                await client.update("pods", pod("a"))
            assert is_conflict(ei.value) and not is_already_exists(ei.value)
            with pytest.raises(ApiError) as ei:
                await client.list("pods", label_selector="app=x", limit=10)
            assert ei.value.code == 500 and ei.value.reason == "InternalError"
            assert await client.patch("pods", "a", {"x": 1}, "d", patch_type="strategic") == {"x": 1}
            body = await client.delete("pods", "a", "d", grace_period_seconds=0, propagation_policy="Background")
            assert body["gracePeriodSeconds"] == 0 and body["propagationPolicy"] == "Background"
            events = []
            with pytest.raises(ApiError) as ei:
                async for ev in client.watch("pods", "d", resource_version="1", timeout_seconds=30):
                    events.append(ev)
            assert ei.value.code == 410 and ei.value.reason == "Expired"
            assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
        finally:
            await client.close()
            await runner.cleanup()
        methods = {s[0] for s in seen}
        assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
        assert all(s[2] == "Bearer tok" and s[3] == "kubeling/test" for s in seen)
        assert ("PATCH", "/api/v1/namespaces/d/pods/a", "Bearer tok", "kubeling/test",
                "application/strategic-merge-patch+json") in seen
        assert any(s[1].startswith("/api/v1/namespaces/default/pods?") or s[1] == "/api/v1/namespaces/default/pods"
                   for s in seen if s[0] == "POST")
        watch = next(s[1] for s in seen if "watch=true" in s[1])
        assert "allowWatchBookmarks=true" in watch and "resourceVersion=1" in watch
        assert "timeoutSeconds=30" in watch
        lst = next(s[1] for s in seen if "labelSelector" in s[1])
        assert "labelSelector=app%3Dx" in lst and "limit=10" in lst
    run(main())


# -- kubeconfig ------------------------------------------------------------------------------------

def test_kubeconfig_parsing(tmp_path):
    ca = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "ca.crt").write_bytes(ca)
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "one",
        "clusters": [
            {"name": "c1", "cluster": {"server": "https://127.0.0.1:6443",
                                       "certificate-authority-data": base64.b64encode(ca).decode()}},
            {"name": "c2", "cluster": {"server": "https://a:1,https://b:2", "certificate-authority": "ca.crt"}},
            {"name": "c3", "cluster": {"server": "https://x", "insecure-skip-tls-verify": True}},
        ],
        "users": [{"name": "u1", "user": {"token": "abc"}}, {"name": "u2", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1"}},
                     {"name": "two", "context": {"cluster": "c2", "user": "u2", "namespace": "ns"}},
                     {"name": "three", "context": {"cluster": "c3", "user": "u1"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_bytes(orjson.dumps(doc))  # JSON is YAML
    c1 = ClientConfig.from_kubeconfig(path)
    assert (c1.server, c1.token, c1.ca_pem, c1.insecure) == ("https://127.0.0.1:6443", "abc", ca, False)
    c2 = ClientConfig.from_kubeconfig(str(path), context="two")
    assert c2.servers == ["https://a:1", "https://b:2"] and c2.token == "file-token" and c2.ca_pem == ca
    assert c2.namespace == "ns"
    c3 = ClientConfig.from_kubeconfig(path, "three")
    assert c3.insecure and c3.ssl_context() is False


# -- events ----------------------------------------------------------------------------------------

def test_event_recorder_creates_then_aggregates():
    async def main():
        api = FakeApi()
        rec = EventRecorder(api, "daemonset-controller", host="host-1")
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet",
              "metadata": {"name": "fluentd", "namespace": "kube-system", "uid": "u1", "resourceVersion": "9"}}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u2"}}
        rec.event(ds, "Normal", "SuccessfulCreate", "Created pod: fluentd-abc")
        rec.event(ds, "Normal", "SuccessfulCreate", "Created pod: fluentd-abc")
        rec.event(node, "Warning", "NodeNotReady", "Node n1 status is now: NodeNotReady")
        await rec.flush()
        evs = [o for (r, _ns, _n), o in api.objects.items() if r == "events"]
        assert len(evs) == 2
        ev = next(e for e in evs if e["reason"] == "SuccessfulCreate")
        assert ev["metadata"]["namespace"] == "kube-system"
        name, _, suffix = ev["metadata"]["name"].rpartition(".")
        assert name == "fluentd" and len(suffix) >= 15 and int(suffix, 16) > 0
        assert ev["involvedObject"] == {"kind": "DaemonSet", "namespace": "kube-system", "name": "fluentd",
                                        "uid": "u1", "apiVersion": "apps/v1", "resourceVersion": "9"}
        assert ev["source"] == {"component": "daemonset-controller", "host": "host-1"}
        assert ev["reportingComponent"] == "daemonset-controller" and ev["reportingInstance"] == "host-1"
        assert ev["count"] == 2 and ev["type"] == "Normal"
        assert ev["firstTimestamp"].endswith("Z") and ev["lastTimestamp"].endswith("Z")
        nev = next(e for e in evs if e["reason"] == "NodeNotReady")
        assert nev["metadata"]["namespace"] == "default" and "namespace" not in nev["involvedObject"]
        assert [c[0] for c in api.calls] == ["create", "patch", "create"]
        await rec.close()
    run(main())


def test_event_recorder_spam_filter_and_errors_do_not_raise():
    async def main():
        api = FakeApi()

        async def broken_create(*a, **k):
            raise ApiError(500, "InternalError", "nope")

        api.create = broken_create
        rec = EventRecorder(api, "c")
        obj = pod("p")
        for i in range(40):
            rec.event(obj, "Warning", "Failed", f"attempt {i}")
        await rec.flush()
        assert rec.dropped == 15  # burst of 25 per object and reason
        await rec.close()
    run(main())


# -- leader election ------------------------------------------------------------------------------

def test_leader_election_one_leader_then_handover_on_release():
    async def main():
        api = FakeApi()
        log: list[str] = []

        def elector(ident):
            async def lead():
                log.append(f"start {ident}")
                await asyncio.Event().wait()
            return LeaderElector(api, "kube-controller-manager", "kube-system", ident, lead,
                                 lambda: log.append(f"stop {ident}"),
                                 lease_duration=1.5, renew_deadline=1.0, retry_period=0.05)

        a, b = elector("a"), elector("b")
        ta = asyncio.create_task(a.run())
        while not a.is_leader():
            await asyncio.sleep(0.01)
        tb = asyncio.create_task(b.run())
        lease = api.objects[("leases.coordination.k8s.io", "kube-system", "kube-controller-manager")]
        first_renew = lease["spec"]["renewTime"]
        while api.objects[("leases.coordination.k8s.io", "kube-system",
                           "kube-controller-manager")]["spec"]["renewTime"] == first_renew:
            await asyncio.sleep(0.01)
        assert not b.is_leader() and b.get_leader() == "a"
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)
        while not b.is_leader():
            await asyncio.sleep(0.01)
        spec = api.objects[("leases.coordination.k8s.io", "kube-system", "kube-controller-manager")]["spec"]
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        assert spec["leaseDurationSeconds"] == 1
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        assert log == ["start a", "stop a", "start b", "stop b"]
    run(main())


def test_leader_election_releases_a_lease_renewed_behind_its_back():
    """A renewal cut short by the stop may still have been written: the release reads the Lease again
    rather than conflicting with its own last write, so the Lease is given up all the same."""
    async def main():
        api = FakeApi()
        key = ("leases.coordination.k8s.io", "kube-system", "kube-scheduler")
        a = LeaderElector(api, "kube-scheduler", "kube-system", "a", lambda: asyncio.Event().wait(), None,
                          lease_duration=15, renew_deadline=10, retry_period=5)
        ta = asyncio.create_task(a.run())
        while not a.is_leader():
            await asyncio.sleep(0.01)
        # the renewal the elector never saw answered: same holder, a newer resourceVersion
        current = _copy.deepcopy(api.objects[key])
        current["spec"]["renewTime"] = "2030-01-01T00:00:00.000000Z"
        await api.update("leases.coordination.k8s.io", current, "kube-system")
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)
        spec = api.objects[key]["spec"]
        assert not spec.get("holderIdentity") and spec["leaseDurationSeconds"] == 1
    run(main())


def test_leader_election_takes_over_expired_lease_and_steps_down_when_lost():
    async def main():
        api = FakeApi()
        api.put("leases.coordination.k8s.io", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "ns"},
            "spec": {"holderIdentity": "dead", "leaseDurationSeconds": 1, "leaseTransitions": 3,
                     "renewTime": "2020-01-01T00:00:00.000000Z"}})
        stopped = asyncio.Event()
        started: list[bool] = []
        el = LeaderElector(api, "l", "ns", "me", lambda: started.append(True), stopped.set,
                           lease_duration=1, renew_deadline=0.5, retry_period=0.05)
        task = asyncio.create_task(el.run())
        while not el.is_leader():
            await asyncio.sleep(0.01)
        spec = api.objects[("leases.coordination.k8s.io", "ns", "l")]["spec"]
        assert spec["holderIdentity"] == "me" and spec["leaseTransitions"] == 4 and started == [True]
        # someone else grabs the lease: our renewals conflict / see another holder, we step down
        cur = api.objects[("leases.coordination.k8s.io", "ns", "l")]
        cur["spec"]["holderIdentity"] = "thief"
        api.put("leases.coordination.k8s.io", cur)
        await stopped.wait()
        await task  # run() returns after losing the lease
        assert not el.is_leader()
    run(main())


def test_connection_error_fails_over_to_next_server():
    async def handler(request):
        return web.json_response({"kind": "Namespace", "metadata": {"name": request.match_info["tail"]}})

    async def main():
        runner, url = await _fake_server(handler)
        dead = f"http://127.0.0.1:{_closed_port()}"
        client = Client(ClientConfig(server=f"{dead},{url}"))
        try:
            with pytest.raises(aiohttp.ClientConnectorError):
                await client.get("namespaces", "x")
            assert client.server == url
            assert (await client.get("namespaces", "x"))["kind"] == "Namespace"
        finally:
            await client.close()
            await runner.cleanup()
    run(main())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
