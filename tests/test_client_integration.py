"""kubeling.client against a running API server: CRUD, watch, informers (including a relist after
410 Gone), events and leader election. Written to hold against a real Kubernetes API server too.

Every test runs twice: over HTTPS against a `kubeling up` process (the ``cluster`` fixture), and
through the in-process loopback against a `kubeling up` composed in the test's own event loop
(API server and components, as `kubeling up` composes them), so both transports answer alike."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from kubeling.cli import runtime
from kubeling.client.events import EventRecorder
from kubeling.client.informer import Informer, object_key
from kubeling.client.leaderelection import LeaderElector
from kubeling.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["https", "loopback"])
def connect(request, cluster, tmp_path):
    """``connect(cls=Client)``: an async context manager giving a client of the parametrized transport."""

    @contextlib.asynccontextmanager
    async def open_client(cls: type[Client] = Client, **kw: Any):
        if request.param == "https":
            async with cls(cluster.client_config(), **kw) as c:
                yield c
            return
        data = tmp_path / "inproc"
        api = await runtime.start_apiserver(data_dir=data, port=free_port(), store_url="sqlite://")
        loopback = api.loopback()
        comps = await runtime.start_components(data / "kubeconfig", nodes=0, loopback=loopback)
        try:
            async with cls(runtime.client_config(data / "kubeconfig"), loopback=loopback, **kw) as c:
                yield c
        finally:
            await runtime.stop_components(comps)
            await api.stop()

    return open_client


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(pred, what: str, timeout: float = 60):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def cm(name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def test_configmap_crud_and_errors(connect):
    async def main():
        async with connect(component="test") as c:
            name = uniq("cm")
            created = await c.create("configmaps", cm(name, {"a": "1"}, {"suite": "client"}), "default")
            assert created["metadata"]["name"] == name and created["metadata"]["resourceVersion"]
            with pytest.raises(ApiError) as ei:
                await c.create("configmaps", cm(name), "default")
            assert is_already_exists(ei.value) and ei.value.code == 409
            got = await c.get("configmaps", name, "default")
            assert got["data"] == {"a": "1"}
            listed = await c.list("configmaps", "default", label_selector="suite=client")
            assert name in {i["metadata"]["name"] for i in listed["items"]}
            assert listed["metadata"]["resourceVersion"]
            merged = await c.patch("configmaps", name, {"data": {"b": "2"}}, "default")
            assert merged["data"] == {"a": "1", "b": "2"}
            strategic = await c.patch("configmaps", name, {"metadata": {"labels": {"x": "y"}}}, "default",
                                      patch_type="strategic")
            assert strategic["metadata"]["labels"] == {"suite": "client", "x": "y"}
            jsonp = await c.patch("configmaps", name, [{"op": "remove", "path": "/data/a"}], "default",
                                  patch_type="json")
            assert jsonp["data"] == {"b": "2"}
            stale = dict(got)
            stale["data"] = {"stale": "1"}
            with pytest.raises(ApiError) as ei:
                await c.update("configmaps", stale, "default")
            assert is_conflict(ei.value)
            fresh = await c.get("configmaps", name, "default")
            fresh["data"] = {"c": "3"}
            updated = await c.update("configmaps", fresh, "default")
            assert updated["data"] == {"c": "3"}
            with pytest.raises(ApiError) as ei:
                await c.delete("configmaps", name, "default",
                               preconditions={"resourceVersion": fresh["metadata"]["resourceVersion"]})
            assert is_conflict(ei.value)
            await c.delete("configmaps", name, "default")
            with pytest.raises(ApiError) as ei:
                await c.get("configmaps", name, "default")
            assert is_not_found(ei.value) and ei.value.reason == "NotFound"
            assert ei.value.status["kind"] == "Status"
    run(main())


def test_pod_create_list_patch_delete(connect):
    async def main():
        async with connect() as c:
            name = uniq("pod")
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
            created = await c.create("pods", body, "default")
            assert created["metadata"]["uid"]
            assert created["status"]["phase"] == "Pending"
            by_field = await c.list("pods", "default", field_selector=f"metadata.name={name}")
            assert [p["metadata"]["name"] for p in by_field["items"]] == [name]
            by_label = await c.list("pods", label_selector=f"app={name}")  # all namespaces
            assert [object_key(p) for p in by_label["items"]] == [f"default/{name}"]
            patched = await c.patch("pods", name, {"metadata": {"annotations": {"k": "v"}}}, "default",
                                    patch_type="strategic")
            assert patched["metadata"]["annotations"]["k"] == "v"
            await c.delete("pods", name, "default", grace_period_seconds=0)

            async def gone():
                try:
                    await c.get("pods", name, "default")
                except ApiError as e:
                    return is_not_found(e)
                return False
            await eventually(gone, "pod deleted")
    run(main())


def test_paginated_list(connect):
    async def main():
        async with connect() as c:
            label = uniq("page")
            for i in range(7):
                await c.create("configmaps", cm(f"{label}-{i}", labels={"page": label}), "default")
            first = await c.list("configmaps", "default", label_selector=f"page={label}", limit=3)
            assert len(first["items"]) == 3 and first["metadata"].get("continue")
            everything = await c.list_all("configmaps", "default", label_selector=f"page={label}", page_size=3)
            assert sorted(i["metadata"]["name"] for i in everything["items"]) == \
                sorted(f"{label}-{i}" for i in range(7))
            await c.delete_collection("configmaps", "default", label_selector=f"page={label}")
    run(main())


def test_watch_streams_changes(connect):
    async def main():
        async with connect() as c:
            name = uniq("w")
            rv = (await c.list("configmaps", "default"))["metadata"]["resourceVersion"]
            seen: list[tuple[str, str]] = []

            async def watch():
                async for ev in c.watch("configmaps", "default", resource_version=rv,
                                        field_selector=f"metadata.name={name}", timeout_seconds=60):
                    if ev["type"] == "BOOKMARK":
                        continue
                    seen.append((ev["type"], ev["object"]["metadata"]["name"]))
                    assert ev["object"]["kind"] == "ConfigMap"
                    if ev["type"] == "DELETED":
                        return

            task = asyncio.create_task(watch())
            await c.create("configmaps", cm(name, {"a": "1"}), "default")
            await c.patch("configmaps", name, {"data": {"a": "2"}}, "default")
            await c.delete("configmaps", name, "default")
            await asyncio.wait_for(task, 60)
            assert seen == [("ADDED", name), ("MODIFIED", name), ("DELETED", name)]
    run(main())


class InjectingClient(Client):
    """A real client whose watches can be made blind (drop events) and then fail with 410."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.blind = False
        self.dropped = 0
        self.lists = 0
        self.inject_410 = asyncio.Event()

    async def list_all(self, *a: Any, **kw: Any) -> dict[str, Any]:
        self.lists += 1
        return await super().list_all(*a, **kw)

    async def watch(self, *a: Any, **kw: Any):
        agen = super().watch(*a, **kw)
        try:
            while True:
                nxt = asyncio.ensure_future(agen.__anext__())
                trig = asyncio.ensure_future(self.inject_410.wait())
                done, _ = await asyncio.wait({nxt, trig}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt  # let the cancellation unwind the real watch
                    self.inject_410.clear()
                    self.blind = False
                    raise ApiError(410, "Expired", "too old resource version (injected)")
                trig.cancel()
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    return
                if self.blind and ev["type"] != "BOOKMARK":
                    self.dropped += 1
                    continue
                yield ev
        finally:
            await agen.aclose()


def test_informer_follows_changes_and_relists_after_410(connect):
    async def main():
        async with connect(InjectingClient) as c:
            label = uniq("inf")
            sel = f"informer={label}"
            for n in ("keep", "change", "remove"):
                await c.create("configmaps", cm(f"{label}-{n}", {"v": "1"}, {"informer": label}), "default")
            inf = Informer(c, "configmaps", "default", label_selector=sel,
                           indexers={"v": lambda o: [(o.get("data") or {}).get("v", "")]})
            events: list[tuple[str, str]] = []
            inf.add_handler(lambda t, o, old: events.append((t, o["metadata"]["name"].removeprefix(label + "-"))))
            task = asyncio.create_task(inf.run())
            try:
                await asyncio.wait_for(inf.wait_synced(), 60)
                assert sorted(events) == [("ADDED", "change"), ("ADDED", "keep"), ("ADDED", "remove")]
                assert inf.get(f"{label}-keep", "default")["kind"] == "ConfigMap"

                # ordinary changes flow through the watch
                await c.create("configmaps", cm(f"{label}-live", {"v": "2"}, {"informer": label}), "default")
                await c.patch("configmaps", f"{label}-keep", {"data": {"v": "3"}}, "default")
                await eventually(lambda: inf.get(f"{label}-keep", "default")["data"]["v"] == "3", "patch seen")
                await eventually(lambda: inf.get(f"{label}-live", "default") is not None, "create seen")
                assert {o["metadata"]["name"] for o in inf.by_index("v", "2")} == {f"{label}-live"}
                await c.delete("configmaps", f"{label}-live", "default")
                await eventually(lambda: inf.get(f"{label}-live", "default") is None, "delete seen")
                assert inf.by_index("v", "2") == []
                assert events[3:] == [("ADDED", "live"), ("MODIFIED", "keep"), ("DELETED", "live")]

                # now miss three changes, then get 410: the relist must deliver them
                c.blind = True
                await c.create("configmaps", cm(f"{label}-new", {"v": "1"}, {"informer": label}), "default")
                await c.patch("configmaps", f"{label}-change", {"data": {"v": "9"}}, "default")
                await c.delete("configmaps", f"{label}-remove", "default")
                await eventually(lambda: c.dropped >= 3, "watch events dropped")
                assert inf.get(f"{label}-new", "default") is None  # really missed
                before, lists = len(events), c.lists
                c.inject_410.set()
                await eventually(lambda: c.lists > lists and inf.get(f"{label}-new", "default") is not None,
                                 "relist after 410")
                assert sorted(events[before:]) == [("ADDED", "new"), ("DELETED", "remove"), ("MODIFIED", "change")]
                assert sorted(o["metadata"]["name"] for o in inf.list("default")) == \
                    sorted(f"{label}-{n}" for n in ("change", "keep", "new"))
                assert inf.get(f"{label}-change", "default")["data"]["v"] == "9"

                # and the watch resumed after the relist
                await c.delete("configmaps", f"{label}-keep", "default")
                await eventually(lambda: inf.get(f"{label}-keep", "default") is None, "watch resumed")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await c.delete_collection("configmaps", "default", label_selector=sel)
    run(main())


def test_event_recorder_writes_and_aggregates(connect):
    async def main():
        async with connect() as c:
            name = uniq("ev")
            obj = await c.create("configmaps", cm(name), "default")
            rec = EventRecorder(c, "test-controller", host="test-host")
            for _ in range(6):  # written by concurrent writers, yet counted on one Event
                rec.event(obj, "Normal", "Tested", "first")
            rec.event(obj, "Warning", "Broken", "second")
            for i in range(12):  # distinct events, each its own Event
                rec.event(obj, "Normal", "Step", f"step {i}")
            await rec.flush()
            await rec.close()
            evs = [e for e in (await c.list("events", "default"))["items"]
                   if e["involvedObject"].get("name") == name]
            by_reason = {e["reason"]: e for e in evs}
            assert sorted(by_reason) == ["Broken", "Step", "Tested"] and len(evs) == 14
            assert sorted(e["message"] for e in evs if e["reason"] == "Step") == sorted(f"step {i}" for i in range(12))
            assert by_reason["Tested"]["count"] == 6 and by_reason["Broken"]["type"] == "Warning"
            assert by_reason["Tested"]["involvedObject"]["uid"] == obj["metadata"]["uid"]
            assert by_reason["Tested"]["source"]["component"] == "test-controller"
            await c.delete("configmaps", name, "default")
    run(main())


def test_leader_election_on_a_lease(connect):
    async def main():
        async with connect() as c:
            lease = uniq("lease")
            leading: list[str] = []

            def make(ident: str) -> LeaderElector:
                return LeaderElector(c, lease, "default", ident, lambda: leading.append(ident), None,
                                     lease_duration=3, renew_deadline=2, retry_period=0.2)

            a, b = make("a"), make("b")
            ta = asyncio.create_task(a.run())
            await eventually(lambda: a.is_leader(), "a leads")
            tb = asyncio.create_task(b.run())
            got = await c.get("leases.coordination.k8s.io", lease, "default")
            assert got["spec"]["holderIdentity"] == "a" and got["spec"]["leaseDurationSeconds"] == 3
            ta.cancel()  # releases the lease
            await asyncio.gather(ta, return_exceptions=True)
            await eventually(lambda: b.is_leader(), "b takes over")
            got = await c.get("leases.coordination.k8s.io", lease, "default")
            assert got["spec"]["holderIdentity"] == "b" and got["spec"]["leaseTransitions"] == 1
            assert leading == ["a", "b"]
            tb.cancel()
            await asyncio.gather(tb, return_exceptions=True)
            await c.delete("leases.coordination.k8s.io", lease, "default")
    run(main())
