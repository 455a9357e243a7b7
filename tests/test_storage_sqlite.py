"""The SQLite store beyond the Store contract (tests/test_storage_contract.py runs that on both
backends): its row layout, write batches, compaction, crash safety, the dict model with
compaction, and the URL factory."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeling.storage import (
    Compacted,
    Conflict,
    KeyExists,
    NotFound,
    SqliteStore,
    open_store,
)
from kubeling.storage.sqlite import raw_sqlite_commit_rate

REPO = Path(__file__).resolve().parents[1]


def pod(name: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, **extra}


def key(name: str, ns: str = "default") -> str:
    return f"/registry/pods/{ns}/{name}"


def with_store(path: Path, fn: Callable[[SqliteStore], Awaitable[Any]], **opts: Any) -> Any:
    """Run fn against a started store in a fresh event loop, then close it."""

    async def main() -> Any:
        opts.setdefault("compact_interval", 0)
        store = SqliteStore(path, **opts)
        await store.start()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- CRUD ------------------------------------------------------------------


def test_rows_hold_objects_without_resource_version(tmp_path: Path) -> None:
    """The SQLite layout (CRUD itself is in test_storage_contract): revisions are row ids and the
    stored value has no resourceVersion."""

    async def body(s: SqliteStore) -> None:
        a = await s.create(key("a"), pod("a", spec={"n": 1}))
        await s.create(key("b"), pod("b"))
        a["spec"]["n"] = 2
        a2 = await s.update(key("a"), a, expected_revision=1)
        await s.delete(key("a"), expected_revision=rv(a2))
        await s.create(key("a"), pod("a", spec={"n": 5}))

    with_store(tmp_path / "s.db", body)
    rows = (
        sqlite3.connect(tmp_path / "s.db").execute("SELECT id, name, value FROM kine ORDER BY id").fetchall()
    )
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    for _id, _name, value in rows:
        assert "resourceVersion" not in orjson.loads(value)["metadata"]


async def hold_writer(s: SqliteStore) -> threading.Event:
    """Park the writer thread until the returned event is set, so later writes queue up into one batch."""
    gate = threading.Event()
    asyncio.ensure_future(s._call(lambda _conn: gate.wait(30)))
    await asyncio.sleep(0)
    return gate


async def release(gate: threading.Event, *coros: Awaitable[Any]) -> list[Any]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    await asyncio.sleep(0)  # every write is queued behind the parked writer
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_one_batch_gives_each_write_its_own_outcome(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        async def outcome(coro: Awaitable[Any]) -> Any:
            try:
                return rv(await coro)
            except Exception as e:  # noqa: BLE001 - the outcome is what we check
                return type(e).__name__

        # Queued back to back, these commit together; each still gets its own answer.
        results = await release(
            await hold_writer(s),
            outcome(s.create(key("a"), pod("a"))),
            outcome(s.create(key("a"), pod("a"))),
            outcome(s.delete(key("a"))),
            outcome(s.create(key("a"), pod("a", spec={"again": True}))),
            outcome(s.update(key("nope"), pod("nope"), expected_revision=1)),
            outcome(s.delete(key("a"), expected_revision=1)),
            *(outcome(s.create(key(f"p{i}"), pod(f"p{i}"))) for i in range(30)),
        )
        assert results[:6] == [1, "KeyExists", 2, 3, "NotFound", "Conflict"]
        assert results[6:] == list(range(4, 34))
        assert (await s.get(key("a")))["spec"] == {"again": True}
        assert len((await s.list("/registry/pods/")).items) == 31

    with_store(tmp_path / "s.db", body)


def test_a_failed_commit_fails_the_whole_batch_and_nothing_else(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        assert s._writer is not None
        real_insert = s._writer._insert

        def flaky_insert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
            if row[1] == key("boom"):
                raise sqlite3.OperationalError("disk I/O error")
            real_insert(conn, row)

        await s.create(key("a"), pod("a"))
        s._writer._insert = flaky_insert  # type: ignore[method-assign]
        results = await release(
            await hold_writer(s),
            s.create(key("b"), pod("b")),
            s.delete(key("a")),
            s.create(key("boom"), pod("boom")),
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
        s._writer._insert = real_insert  # type: ignore[method-assign]
        assert s.current_revision() == 1
        assert rv(await s.create(key("c"), pod("c"))) == 2
        assert [o["metadata"]["name"] for o in (await s.list("/registry/pods/")).items] == ["a", "c"]
        assert rv(await s.delete(key("a"))) == 3

    db = tmp_path / "s.db"
    with_store(db, body)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM kine").fetchone()[0] == 3


# --- lists -----------------------------------------------------------------


def test_compaction(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    def rows() -> int:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM kine").fetchone()[0]

    async def body(s: SqliteStore) -> None:
        for i in range(20):
            await s.create(key(f"p{i}"), pod(f"p{i}", spec={"v": 0}))
        for v in range(1, 4):
            for i in range(20):
                cur = await s.get(key(f"p{i}"))
                cur["spec"]["v"] = v
                await s.update(key(f"p{i}"), cur, expected_revision=rv(cur))
        for i in range(10):
            await s.delete(key(f"p{i}"))
        assert s.current_revision() == 90
        old = await s.list("/registry/pods/", revision=30)
        assert len(old.items) == 20
        assert sorted(o["spec"]["v"] for o in old.items) == [0] * 10 + [1] * 10

        assert rows() == 90
        deleted = await s.compact(keep=5)
        assert s.compact_revision == 85
        # Left: the newest row of each of the 10 live keys, the 5 tombstones above 85 and
        # the rows those 5 replaced (still needed to answer for revisions 85..89).
        assert rows() == 20 and deleted == 70
        with pytest.raises(Compacted):
            await s.list("/registry/pods/", revision=30)
        at85 = await s.list("/registry/pods/", revision=85, limit=4)
        assert len(at85.items) == 4 and at85.remaining == 11  # p5..p9 were still there at 85
        full85 = await s.list("/registry/pods/", revision=85)
        assert {o["metadata"]["name"] for o in full85.items} == {f"p{i}" for i in range(5, 20)}
        # Re-creating a deleted key whose rows are gone, and one whose tombstone remains.
        assert rv(await s.create(key("p0"), pod("p0"))) == 91
        assert rv(await s.create(key("p9"), pod("p9"))) == 92
        await s.compact(keep=0)  # every tombstone goes, even the newest revision's
        assert s.compact_revision == 92

    with_store(db, body, compact_batch=7)

    async def after(s: SqliteStore) -> None:
        assert s.current_revision() == 92 and s.compact_revision == 92
        assert len((await s.list("/registry/pods/")).items) == 12
        await s.delete(key("p0"))
        assert rv(await s.create(key("new"), pod("new"))) == 94  # never goes back

    with_store(db, after)


def test_compacting_everything_keeps_the_revision_counter(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    async def body(s: SqliteStore) -> None:
        for i in range(5):
            await s.create(key(f"p{i}"), pod(f"p{i}"))
            await s.delete(key(f"p{i}"))
        await s.compact(keep=0)

    with_store(db, body)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM kine").fetchone()[0] == 0

    async def after(s: SqliteStore) -> None:
        assert s.current_revision() == 10
        assert rv(await s.create(key("p0"), pod("p0"))) == 11

    with_store(db, after)


def test_periodic_compaction_runs_at_start(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    async def fill(s: SqliteStore) -> None:
        await s.create(key("a"), pod("a", spec={"v": 0}))
        for v in range(1, 30):
            cur = await s.get(key("a"))
            cur["spec"]["v"] = v
            await s.update(key("a"), cur, expected_revision=rv(cur))

    with_store(db, fill)

    async def check(s: SqliteStore) -> None:
        for _ in range(200):
            if s.compact_revision:
                break
            await asyncio.sleep(0.02)
        assert s.compact_revision == 20

    with_store(db, check, compact_interval=3600, compact_keep=10)


# --- crash safety ----------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from kubeling.storage import SqliteStore

    async def main():
        s = SqliteStore(sys.argv[1], compact_interval=0)
        await s.start()
        out = sys.stdout

        async def worker(t):
            i = 0
            while True:
                k = f"/registry/pods/default/w{t}-{i}"
                o = await s.create(k, {"metadata": {"name": k}, "spec": {"step": 0}})
                out.write(f"{k} {o['metadata']['resourceVersion']} 0\\n"); out.flush()
                o["spec"]["step"] = 1
                o = await s.update(k, o, expected_revision=int(o["metadata"]["resourceVersion"]))
                out.write(f"{k} {o['metadata']['resourceVersion']} 1\\n"); out.flush()
                i += 1

        await asyncio.gather(*(worker(t) for t in range(8)))

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked: dict[str, tuple[int, int]] = {}
    try:
        assert proc.stdout is not None
        for _ in range(400):
            line = proc.stdout.readline()
            assert line, "the writer died before it was killed"
            k, rev, step = line.split()
            acked[k] = (int(rev), int(step))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    async def check(s: SqliteStore) -> None:
        for k, (rev, step) in acked.items():
            obj = await s.get(k)
            assert obj is not None, k
            if step == 1:
                assert rv(obj) == rev and obj["spec"]["step"] == 1
            else:  # the update may have committed without its ack being printed
                assert rv(obj) == rev or (rv(obj) > rev and obj["spec"]["step"] == 1)
        assert s.current_revision() >= max(r for r, _ in acked.values())

    with_store(db, check)
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- property: the store behaves like a dict with a counter ---------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["create", "update", "delete", "stale_update", "stale_delete", "compact"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 2),
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_matches_a_dict_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, int]]
) -> None:
    db = tmp_path_factory.mktemp("prop") / "s.db"
    model: dict[str, tuple[int, int]] = {}  # key -> (revision, value)
    revision = 0

    async def body(s: SqliteStore) -> None:
        nonlocal revision
        for op, name, value in ops:
            k = key(name)
            cur = model.get(k)
            if op == "compact":  # drops history only: the live state must not change
                await s.compact(keep=value)
                continue
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
                    assert rv(new) == revision if value != cur[1] else rv(new) == cur[0]
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

    async def check(s: SqliteStore) -> None:
        got = {
            o["metadata"]["name"]: (rv(o), o["spec"]["v"]) for o in (await s.list("/registry/pods/")).items
        }
        assert got == {k.rsplit("/", 1)[1]: v for k, v in model.items()}
        assert s.current_revision() == revision

    with_store(db, body)
    with_store(db, check)  # and the same after a restart


# --- factory, baseline -----------------------------------------------------


def test_open_store_urls(tmp_path: Path) -> None:
    s = open_store("", tmp_path)
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "state.db"
    assert open_store("sqlite://", tmp_path).path == tmp_path / "state.db"
    assert open_store(f"sqlite://{tmp_path}/x/other.db", Path("/nowhere")).path == tmp_path / "x" / "other.db"
    assert type(open_store("etcd://127.0.0.1:2379", tmp_path)).__name__ == "EtcdStore"
    with pytest.raises(ValueError):
        open_store("mysql://x", tmp_path)


def test_raw_commit_rate_is_measured(tmp_path: Path) -> None:
    assert raw_sqlite_commit_rate(tmp_path / "raw.db", seconds=0.1) > 0


def test_watch_events_of_writes_carry_the_writers_dict(tmp_path: Path) -> None:
    """A create's or update's watch event object is the written dict, stamped (no decode of the stored
    bytes), equal to that decode; a delete's is decoded. Only the newest changes keep the dict."""
    from kubeling.storage import codec, watchcache

    async def scenario() -> None:
        store = SqliteStore(tmp_path / "db.sqlite")
        await store.start()
        try:
            events = store.watch("/registry/pods/", revision=store.current_revision())
            body = pod("a", spec={"containers": [{"name": "c", "image": "i"}]})
            created = await store.create("/registry/pods/default/a", body)
            ev = await events.__anext__()
            assert ev.type == "ADDED" and ev.object == codec.materialize(ev.data, ev.revision)
            assert ev.object["spec"] is body["spec"]  # the writer's own nested values, not a decode
            assert ev.object["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
            changed = {**created, "spec": {"containers": [{"name": "c", "image": "j"}]}}
            await store.update("/registry/pods/default/a", changed,
                               expected_revision=int(created["metadata"]["resourceVersion"]))
            ev = await events.__anext__()
            assert ev.type == "MODIFIED" and ev.object["spec"] is changed["spec"]
            assert ev.object == codec.materialize(ev.data, ev.revision)
            assert ev.object["metadata"]["resourceVersion"] == str(ev.revision)  # not the body's old one
            await store.delete("/registry/pods/default/a")
            ev = await events.__anext__()
            assert ev.type == "DELETED" and ev.object == codec.materialize(ev.data, ev.revision)
            await events.aclose()  # type: ignore[attr-defined]
            # with no watcher, a change keeps the writer's dict only while among the newest
            for i in range(watchcache._SHARED_EVENTS + 5):
                await store.create(f"/registry/pods/default/p{i}", pod(f"p{i}"))
            held = [ch.written is not None for ch in store.cache._events]
            assert sum(held) == watchcache._SHARED_EVENTS and held[-1] and not held[-watchcache._SHARED_EVENTS - 1]
        finally:
            await store.close()

    asyncio.run(scenario())
