"""The Store contract, run on every backend: CRUD, optimistic concurrency, paging at a
revision, watch replay and live, Compacted, restart persistence, a dict model.

Revisions are checked relative to the store's revision when a test starts (a fresh
SQLite file starts at 0, a shared etcd wherever the previous test left it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from etcd_util import EtcdCluster, require_etcd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeling.storage import Compacted, Conflict, Event, KeyExists, NotFound, SqliteStore, Store

BACKENDS = ["sqlite", "etcd"]
_examples = itertools.count()


def pod(name: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, **extra}


def key(name: str, ns: str = "default") -> str:
    return f"/registry/pods/{ns}/{name}"


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def take(it: AsyncIterator[Event], n: int, timeout: float = 10) -> list[Event]:
    return [await asyncio.wait_for(it.__anext__(), timeout) for _ in range(n)]


@dataclass
class Backend:
    """Makes stores of one kind over the same persistent state (a file or an etcd)."""

    name: str
    path: Path
    etcd: EtcdCluster | None = None
    wiped: bool = field(default=False)

    def make(self, **opts: Any) -> Store:
        opts.setdefault("compact_interval", 0)
        if self.name == "sqlite":
            return SqliteStore(self.path, **opts)
        from kubeling.storage.etcd import EtcdStore

        assert self.etcd is not None
        return EtcdStore(self.etcd.endpoints, **opts)

    def run(self, fn: Callable[[Any], Awaitable[Any]], **opts: Any) -> Any:
        """fn(store) against a started store in a fresh event loop, then close it."""

        async def main() -> Any:
            if not self.wiped:
                await wipe(self)
                self.wiped = True
            store = self.make(**opts)
            await store.start()
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(main())


async def wipe(backend: Backend) -> None:
    """Empty the shared etcd (every key) so each test starts with no objects."""
    if backend.etcd is None:
        return
    from aetcd import rpc

    from kubeling.storage.etcd import _Endpoints

    conn = _Endpoints(backend.etcd.endpoints, tls=None, timeout=10, budget=10)
    try:
        await conn.kv_call("DeleteRange", rpc.DeleteRangeRequest(key=b"\0", range_end=b"\0"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    cluster = EtcdCluster.start(tmp_path_factory.mktemp("etcd"))
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "etcd":
        return Backend("etcd", tmp_path, etcd=request.getfixturevalue("etcd_cluster"))
    return Backend("sqlite", tmp_path / "s.db")


# --- CRUD ------------------------------------------------------------------


def test_crud_and_resource_versions(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        assert await s.get(key("a")) is None
        a = await s.create(key("a"), pod("a", spec={"n": 1}))
        assert rv(a) == r + 1 and s.current_revision() == r + 1
        b = await s.create(key("b"), pod("b"))
        assert rv(b) == r + 2
        with pytest.raises(KeyExists):
            await s.create(key("a"), pod("a"))

        got = await s.get(key("a"))
        assert got == a
        got["spec"]["n"] = 99  # callers own what they get
        assert (await s.get(key("a")))["spec"]["n"] == 1

        a["spec"]["n"] = 2
        a2 = await s.update(key("a"), a, expected_revision=r + 1)
        assert rv(a2) == r + 3 and a2["spec"]["n"] == 2
        with pytest.raises(Conflict) as ei:
            await s.update(key("a"), a, expected_revision=r + 1)
        assert ei.value.current is not None and rv(ei.value.current) == r + 3
        assert ei.value.current["spec"]["n"] == 2
        with pytest.raises(NotFound):
            await s.update(key("zz"), pod("zz"), expected_revision=r + 1)

        # Writing back the same object adds no revision (upstream's GuaranteedUpdate does the same).
        same = await s.update(key("a"), a2, expected_revision=r + 3)
        assert rv(same) == r + 3 and s.current_revision() == r + 3

        with pytest.raises(Conflict):
            await s.delete(key("a"), expected_revision=r + 1)
        gone = await s.delete(key("a"), expected_revision=r + 3)
        assert rv(gone) == r + 4 and gone["spec"]["n"] == 2
        assert await s.get(key("a")) is None
        with pytest.raises(NotFound):
            await s.delete(key("a"))
        with pytest.raises(NotFound):
            await s.delete(key("a"), expected_revision=r + 3)

        again = await s.create(key("a"), pod("a", spec={"n": 5}))  # re-create after delete
        assert rv(again) == r + 5
        listed = await s.list("/registry/pods/")
        assert [o["metadata"]["name"] for o in listed.items] == ["a", "b"]
        assert [rv(o) for o in listed.items] == [r + 5, r + 2]
        assert listed.revision == r + 5 and listed.continue_key is None and listed.remaining == 0

    backend.run(body)


def test_incoming_resource_version_is_not_stored(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        obj = pod("a")
        obj["metadata"]["resourceVersion"] = "12345"
        created = await s.create(key("a"), obj)
        assert rv(created) == r + 1
        assert obj["metadata"]["resourceVersion"] == "12345"  # the caller's dict is untouched
        # Re-sending what was read (with its resourceVersion) is the same bytes: no new revision.
        assert rv(await s.update(key("a"), created, expected_revision=r + 1)) == r + 1

    backend.run(body)


def test_one_winner_among_racing_updates(backend: Backend) -> None:
    async def body(s: Store) -> None:
        base = await s.create(key("a"), pod("a", spec={"who": -1}))

        async def attempt(i: int) -> str:
            try:
                await s.update(key("a"), pod("a", spec={"who": i}), expected_revision=rv(base))
                return "won"
            except Conflict:
                return "lost"

        results = await asyncio.gather(*(attempt(i) for i in range(40)))
        assert results.count("won") == 1 and results.count("lost") == 39
        assert (await s.get(key("a")))["spec"]["who"] == results.index("won")

    backend.run(body)


def test_concurrent_read_modify_write_loses_no_update(backend: Backend) -> None:
    tasks, rounds = 16, 10

    async def body(s: Store) -> None:
        r = s.current_revision()
        await s.create(key("counter"), pod("counter", spec={"n": 0}))
        conflicts = 0
        revisions: list[int] = []

        async def worker() -> None:
            nonlocal conflicts
            for _ in range(rounds):
                while True:
                    cur = await s.get(key("counter"))
                    cur["spec"]["n"] += 1
                    try:
                        new = await s.update(key("counter"), cur, expected_revision=rv(cur))
                    except Conflict:
                        conflicts += 1
                        continue
                    revisions.append(rv(new))
                    break

        await asyncio.gather(*(worker() for _ in range(tasks)))
        assert (await s.get(key("counter")))["spec"]["n"] == tasks * rounds
        assert len(set(revisions)) == tasks * rounds  # every success got its own revision
        assert conflicts > 0  # the race really happened
        assert s.current_revision() == r + 1 + tasks * rounds

    backend.run(body)


# --- lists -----------------------------------------------------------------


def test_paged_list_at_a_fixed_revision(backend: Backend) -> None:
    async def body(s: Store) -> None:
        for i in range(25):
            await s.create(key(f"p{i:02d}"), pod(f"p{i:02d}", spec={"v": 0}))
        await s.create(key("x", ns="other"), pod("x", ns="other"))
        await s.create("/registry/podtemplates/default/t", {"kind": "PodTemplate", "metadata": {"name": "t"}})

        page1 = await s.list("/registry/pods/default/", limit=10)
        assert [o["metadata"]["name"] for o in page1.items] == [f"p{i:02d}" for i in range(10)]
        assert page1.continue_key == key("p09") and page1.remaining == 15
        snapshot = page1.revision
        assert snapshot == s.current_revision()

        # Changes after the first page must not show in the later pages.
        await s.delete(key("p12"))
        p15 = await s.get(key("p15"))
        p15["spec"]["v"] = 1
        await s.update(key("p15"), p15, expected_revision=rv(p15))
        await s.create(key("p10a"), pod("p10a"))

        page2 = await s.list("/registry/pods/default/", limit=10, start_after=page1.continue_key, revision=snapshot)
        assert page2.revision == snapshot
        assert [o["metadata"]["name"] for o in page2.items] == [f"p{i:02d}" for i in range(10, 20)]
        assert all(o["spec"]["v"] == 0 for o in page2.items)
        assert page2.continue_key == key("p19") and page2.remaining == 5
        page3 = await s.list("/registry/pods/default/", limit=10, start_after=page2.continue_key, revision=snapshot)
        assert [o["metadata"]["name"] for o in page3.items] == [f"p{i:02d}" for i in range(20, 25)]
        assert page3.continue_key is None and page3.remaining == 0

        # The latest state, paged.
        latest = await s.list("/registry/pods/default/", limit=11, start_after=key("p09"))
        names = [o["metadata"]["name"] for o in latest.items]
        assert names[:3] == ["p10", "p10a", "p11"] and "p12" not in names
        assert len(names) == 11 and latest.remaining == 4
        assert [o["metadata"]["name"] for o in (await s.list("/registry/pods/")).items][-1] == "x"
        assert len((await s.list("/registry/")).items) == 27

    backend.run(body)


# --- watch -----------------------------------------------------------------


def test_watch_replays_then_streams(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        a = await s.create(key("a"), pod("a", spec={"v": 1}))
        await s.create(key("b", ns="kube-system"), pod("b", ns="kube-system"))
        a["spec"]["v"] = 2
        a2 = await s.update(key("a"), a, expected_revision=r + 1)

        it = s.watch("/registry/pods/default/", revision=0).__aiter__()
        it_from_start = s.watch("/registry/pods/default/", revision=r + 1).__aiter__()
        first = await take(it_from_start, 1)
        assert first[0].type == "MODIFIED" and first[0].revision == r + 3
        assert first[0].prev_object["spec"]["v"] == 1 and rv(first[0].prev_object) == r + 1
        assert first[0].object == a2

        await s.delete(key("a"))
        await s.create(key("c"), pod("c"))
        for events in (await take(it, 2), await take(it_from_start, 2)):
            assert [(e.type, e.key, e.revision) for e in events] == [
                ("DELETED", key("a"), r + 4),
                ("ADDED", key("c"), r + 5),
            ]
            deleted = events[0]
            assert rv(deleted.object) == r + 4 and deleted.object["spec"]["v"] == 2
            assert rv(deleted.prev_object) == r + 3
            assert events[1].prev_object is None

        it2 = s.watch("/registry/pods/", revision=r + 4).__aiter__()
        (e1,) = await take(it2, 1)
        e1.object["metadata"]["name"] = "mutated"  # every consumer decodes its own copy
        assert (await s.get(key("c")))["metadata"]["name"] == "c"
        for i in (it, it_from_start, it2):
            await i.aclose()  # type: ignore[attr-defined]

    backend.run(body)


def test_watch_from_a_future_revision_waits_for_it(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        await s.create(key("a"), pod("a"))
        it = s.watch("/registry/pods/", revision=r + 3).__aiter__()
        nxt = asyncio.ensure_future(it.__anext__())
        await s.create(key("b"), pod("b"))  # skipped
        await s.create(key("c"), pod("c"))  # skipped
        await s.create(key("d"), pod("d"))
        ev = await asyncio.wait_for(nxt, 10)
        assert ev.key == key("d") and ev.revision == r + 4
        await it.aclose()  # type: ignore[attr-defined]

    backend.run(body)


def test_watch_too_old_is_compacted(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        for i in range(10):
            await s.create(key(f"p{i}"), pod(f"p{i}"))
        # The window keeps the last 5 changes: a watch may start at r+5 but not before.
        events = await take(s.watch("/registry/pods/", revision=r + 5).__aiter__(), 5)
        assert [e.revision for e in events] == [r + i for i in range(6, 11)]
        with pytest.raises(Compacted) as ei:
            await s.watch("/registry/pods/", revision=r + 4).__anext__()  # type: ignore[attr-defined]
        assert ei.value.requested == r + 4 and ei.value.oldest == r + 5
        assert f"too old resource version: {r + 4} ({r + 5})" in str(ei.value)

    backend.run(body, window=5)


def test_slow_watcher_is_ended_after_draining(backend: Backend) -> None:
    async def body(s: Store) -> None:
        r = s.current_revision()
        it = s.watch("/registry/pods/", revision=0).__aiter__()
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)
        for i in range(10):  # nobody reads while these commit: the queue (3) overflows
            await s.create(key(f"p{i}"), pod(f"p{i}"))
        seen = [(await first).revision]
        async for ev in it:
            seen.append(ev.revision)
        assert seen == list(range(r + 1, r + len(seen) + 1)) and len(seen) < 10
        rest = await take(s.watch("/registry/pods/", revision=seen[-1]).__aiter__(), 10 - len(seen))
        assert [e.revision for e in rest] == list(range(seen[-1] + 1, r + 11))

    backend.run(body, watch_queue=3)


def test_close_ends_watchers(backend: Backend) -> None:
    got: list[Event] = []

    async def body(s: Store) -> None:
        async def consume() -> None:
            async for ev in s.watch("/", revision=0):
                got.append(ev)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await s.create(key("a"), pod("a"))
        await s.close()
        await asyncio.wait_for(task, 10)

    backend.run(body)
    assert [e.key for e in got] == [key("a")]


# --- restart, compaction ---------------------------------------------------


def test_restart_keeps_objects_revisions_and_watch_history(backend: Backend) -> None:
    async def first(s: Store) -> int:
        r = s.current_revision()
        for i in range(5):
            await s.create(key(f"p{i}"), pod(f"p{i}", spec={"i": i}))
        p1 = await s.get(key("p1"))
        p1["spec"]["i"] = 100
        await s.update(key("p1"), p1, expected_revision=r + 2)
        await s.delete(key("p3"))
        return r

    r = backend.run(first)

    async def second(s: Store) -> None:
        assert s.current_revision() == r + 7
        names = [(o["metadata"]["name"], rv(o)) for o in (await s.list("/registry/pods/")).items]
        assert names == [("p0", r + 1), ("p1", r + 6), ("p2", r + 3), ("p4", r + 5)]
        assert (await s.get(key("p1")))["spec"]["i"] == 100
        # Watchers that were at r+5 before the restart resume without a relist.
        events = await take(s.watch("/registry/pods/", revision=r + 5).__aiter__(), 2)
        assert [(e.type, e.revision) for e in events] == [("MODIFIED", r + 6), ("DELETED", r + 7)]
        assert events[0].prev_object["spec"]["i"] == 1 and rv(events[0].prev_object) == r + 2
        assert rv(events[1].prev_object) == r + 4
        assert rv(await s.create(key("p5"), pod("p5"))) == r + 8

    backend.run(second)


def test_compaction_drops_old_revisions_only(backend: Backend) -> None:
    async def body(s: Any) -> None:
        r = s.current_revision()
        for i in range(10):
            await s.create(key(f"p{i}"), pod(f"p{i}", spec={"v": 0}))
        for i in range(10):
            cur = await s.get(key(f"p{i}"))
            cur["spec"]["v"] = 1
            await s.update(key(f"p{i}"), cur, expected_revision=rv(cur))
        for i in range(5):
            await s.delete(key(f"p{i}"))
        assert s.current_revision() == r + 25
        old = await s.list("/registry/pods/", revision=r + 10)
        assert [o["spec"]["v"] for o in old.items] == [0] * 10
        await s.compact(keep=5)
        assert s.compact_revision == r + 20
        with pytest.raises(Compacted):
            await s.list("/registry/pods/", revision=r + 10)
        at20 = await s.list("/registry/pods/", revision=r + 20, limit=4)
        assert len(at20.items) == 4 and at20.remaining == 6 and at20.revision == r + 20
        latest = await s.list("/registry/pods/")
        assert [(o["metadata"]["name"], o["spec"]["v"]) for o in latest.items] == [(f"p{i}", 1) for i in range(5, 10)]
        assert rv(await s.create(key("p0"), pod("p0"))) == s.current_revision() > r + 25

    backend.run(body)


# --- property: the store behaves like a dict with a counter ---------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "delete", "stale_update", "stale_delete"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 2),
    ),
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_matches_a_dict_model(backend: Backend, ops: list[tuple[str, str, int]]) -> None:
    model: dict[str, tuple[int, int]] = {}  # key -> (revision, value)
    backend.wiped = False
    revision = 0

    async def body(s: Store) -> None:
        nonlocal revision
        revision = s.current_revision()
        for op, name, value in ops:
            k = key(name)
            cur = model.get(k)
            if op == "create":
                if cur:
                    with pytest.raises(KeyExists):
                        await s.create(k, pod(name, spec={"v": value}))
                    continue
                revision += 1
                assert rv(await s.create(k, pod(name, spec={"v": value}))) == revision
                model[k] = (revision, value)
            elif op in ("update", "stale_update"):
                expected = (cur[0] if cur else 1) - (op == "stale_update")
                if cur is None:
                    with pytest.raises(NotFound):
                        await s.update(k, pod(name, spec={"v": value}), expected_revision=expected)
                elif expected != cur[0]:
                    with pytest.raises(Conflict):
                        await s.update(k, pod(name, spec={"v": value}), expected_revision=expected)
                else:
                    new = await s.update(k, pod(name, spec={"v": value}), expected_revision=expected)
                    if value != cur[1]:
                        revision += 1
                    assert rv(new) == (revision if value != cur[1] else cur[0])
                    model[k] = (rv(new), value)
            else:
                expected = (cur[0] - 1) if (cur and op == "stale_delete") else None
                if cur is None:
                    with pytest.raises(NotFound):
                        await s.delete(k, expected_revision=expected)
                elif expected is not None:
                    with pytest.raises(Conflict):
                        await s.delete(k, expected_revision=expected)
                else:
                    revision += 1
                    assert rv(await s.delete(k)) == revision
                    del model[k]
            assert s.current_revision() == revision
        await check(s)

    async def check(s: Store) -> None:
        got = {o["metadata"]["name"]: (rv(o), o["spec"]["v"]) for o in (await s.list("/registry/pods/")).items}
        assert got == {k.rsplit("/", 1)[1]: v for k, v in model.items()}
        assert s.current_revision() == revision

    if backend.name == "sqlite":  # a fresh file per example
        backend.path = backend.path.with_name(f"prop{next(_examples)}.db")
    backend.run(body)
    backend.run(check)  # and the same after a restart
