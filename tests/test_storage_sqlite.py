"""The SQLite store: CRUD, optimistic concurrency, paging, watch, compaction, restart, crash safety."""

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
    Event,
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


async def take(it: Any, n: int, timeout: float = 10) -> list[Event]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(it.__anext__(), timeout))
    return out


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- CRUD ------------------------------------------------------------------


def test_crud_and_resource_versions(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        assert s.current_revision() == 0
        assert await s.get(key("a")) is None
        a = await s.create(key("a"), pod("a", spec={"n": 1}))
        assert a["metadata"]["resourceVersion"] == "1"
        assert s.current_revision() == 1
        b = await s.create(key("b"), pod("b"))
        assert rv(b) == 2
        with pytest.raises(KeyExists):
            await s.create(key("a"), pod("a"))

        got = await s.get(key("a"))
        assert got == a
        got["spec"]["n"] = 99  # callers own what they get
        assert (await s.get(key("a")))["spec"]["n"] == 1

        a["spec"]["n"] = 2
        a2 = await s.update(key("a"), a, expected_revision=1)
        assert rv(a2) == 3 and a2["spec"]["n"] == 2
        with pytest.raises(Conflict) as ei:
            await s.update(key("a"), a, expected_revision=1)
        assert ei.value.current is not None and rv(ei.value.current) == 3
        assert ei.value.current["spec"]["n"] == 2
        with pytest.raises(NotFound):
            await s.update(key("zz"), pod("zz"), expected_revision=1)

        # Writing back the same object adds no revision (upstream's GuaranteedUpdate does the same).
        same = await s.update(key("a"), a2, expected_revision=3)
        assert rv(same) == 3 and s.current_revision() == 3

        with pytest.raises(Conflict):
            await s.delete(key("a"), expected_revision=1)
        gone = await s.delete(key("a"), expected_revision=3)
        assert rv(gone) == 4 and gone["spec"]["n"] == 2
        assert await s.get(key("a")) is None
        with pytest.raises(NotFound):
            await s.delete(key("a"))

        again = await s.create(key("a"), pod("a", spec={"n": 5}))  # re-create after delete
        assert rv(again) == 5
        listed = await s.list("/registry/pods/")
        assert [o["metadata"]["name"] for o in listed.items] == ["a", "b"]
        assert listed.revision == 5 and listed.continue_key is None and listed.remaining == 0

    with_store(tmp_path / "s.db", body)
    # The stored rows hold the object without its resourceVersion; revisions are row ids.
    rows = (
        sqlite3.connect(tmp_path / "s.db").execute("SELECT id, name, value FROM kine ORDER BY id").fetchall()
    )
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    for _id, _name, value in rows:
        assert "resourceVersion" not in orjson.loads(value)["metadata"]


def test_incoming_resource_version_is_not_stored(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        obj = pod("a")
        obj["metadata"]["resourceVersion"] = "12345"
        created = await s.create(key("a"), obj)
        assert rv(created) == 1
        assert obj["metadata"]["resourceVersion"] == "12345"  # the caller's dict is untouched

    with_store(tmp_path / "s.db", body)


def test_one_winner_among_racing_updates(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        base = await s.create(key("a"), pod("a", spec={"who": -1}))

        async def attempt(i: int) -> str:
            try:
                await s.update(key("a"), pod("a", spec={"who": i}), expected_revision=rv(base))
                return "won"
            except Conflict:
                return "lost"

        results = await asyncio.gather(*(attempt(i) for i in range(40)))
        assert results.count("won") == 1 and results.count("lost") == 39
        winner = results.index("won")
        assert (await s.get(key("a")))["spec"]["who"] == winner

    with_store(tmp_path / "s.db", body)


def test_concurrent_read_modify_write_loses_no_update(tmp_path: Path) -> None:
    tasks, rounds = 24, 15

    async def body(s: SqliteStore) -> None:
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
        final = await s.get(key("counter"))
        assert final["spec"]["n"] == tasks * rounds
        assert len(set(revisions)) == tasks * rounds  # every success got its own revision
        assert conflicts > 0  # the race really happened
        assert s.current_revision() == 1 + tasks * rounds

    with_store(tmp_path / "s.db", body)


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


def test_paged_list_at_a_fixed_revision(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        for i in range(25):
            await s.create(key(f"p{i:02d}"), pod(f"p{i:02d}", spec={"v": 0}))
        await s.create(key("x", ns="other"), pod("x", ns="other"))
        await s.create("/registry/podtemplates/default/t", {"kind": "PodTemplate", "metadata": {"name": "t"}})

        page1 = await s.list("/registry/pods/default/", limit=10)
        assert [o["metadata"]["name"] for o in page1.items] == [f"p{i:02d}" for i in range(10)]
        assert page1.continue_key == key("p09") and page1.remaining == 15
        snapshot = page1.revision

        # Changes after the first page must not show in the later pages.
        await s.delete(key("p12"))
        p15 = await s.get(key("p15"))
        p15["spec"]["v"] = 1
        await s.update(key("p15"), p15, expected_revision=rv(p15))
        await s.create(key("p10a"), pod("p10a"))

        page2 = await s.list(
            "/registry/pods/default/", limit=10, start_after=page1.continue_key, revision=snapshot
        )
        assert page2.revision == snapshot
        assert [o["metadata"]["name"] for o in page2.items] == [f"p{i:02d}" for i in range(10, 20)]
        assert all(o["spec"]["v"] == 0 for o in page2.items)
        assert page2.continue_key == key("p19") and page2.remaining == 5
        page3 = await s.list(
            "/registry/pods/default/", limit=10, start_after=page2.continue_key, revision=snapshot
        )
        assert [o["metadata"]["name"] for o in page3.items] == [f"p{i:02d}" for i in range(20, 25)]
        assert page3.continue_key is None and page3.remaining == 0

        # The latest state, paged from memory.
        latest = await s.list("/registry/pods/default/", limit=11, start_after=key("p09"))
        names = [o["metadata"]["name"] for o in latest.items]
        assert names[:3] == ["p10", "p10a", "p11"] and "p12" not in names
        assert len(names) == 11 and latest.remaining == 4  # p10, p10a, p11, p13..p24 after p09
        assert [o["metadata"]["name"] for o in (await s.list("/registry/pods/")).items][-1] == "x"
        assert len((await s.list("/registry/")).items) == 27

    with_store(tmp_path / "s.db", body)


# --- watch -----------------------------------------------------------------


def test_watch_replays_then_streams(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        a = await s.create(key("a"), pod("a", spec={"v": 1}))
        await s.create(key("b", ns="kube-system"), pod("b", ns="kube-system"))
        a["spec"]["v"] = 2
        a2 = await s.update(key("a"), a, expected_revision=1)

        it = s.watch("/registry/pods/default/", revision=0).__aiter__()
        it_from_start = s.watch("/registry/pods/default/", revision=1).__aiter__()
        first = await take(it_from_start, 1)
        assert first[0].type == "MODIFIED" and first[0].revision == 3
        assert first[0].prev_object["spec"]["v"] == 1 and rv(first[0].prev_object) == 1
        assert first[0].object == a2

        await s.delete(key("a"))
        await s.create(key("c"), pod("c"))
        for events in (await take(it, 2), await take(it_from_start, 2)):
            assert [(e.type, e.key, e.revision) for e in events] == [
                ("DELETED", key("a"), 4),
                ("ADDED", key("c"), 5),
            ]
            deleted = events[0]
            assert rv(deleted.object) == 4 and deleted.object["spec"]["v"] == 2
            assert rv(deleted.prev_object) == 3
            assert events[1].prev_object is None

        # Every consumer decodes its own copy.
        it2 = s.watch("/registry/pods/", revision=4).__aiter__()
        (e1,) = await take(it2, 1)
        e1.object["metadata"]["name"] = "mutated"
        assert (await s.get(key("c")))["metadata"]["name"] == "c"
        await it.aclose()
        await it_from_start.aclose()
        await it2.aclose()

    with_store(tmp_path / "s.db", body)


def test_watch_from_a_future_revision_waits_for_it(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        await s.create(key("a"), pod("a"))
        it = s.watch("/registry/pods/", revision=3).__aiter__()
        nxt = asyncio.ensure_future(it.__anext__())
        await s.create(key("b"), pod("b"))  # revision 2: skipped
        await s.create(key("c"), pod("c"))  # revision 3: skipped
        await s.create(key("d"), pod("d"))
        ev = await asyncio.wait_for(nxt, 10)
        assert ev.key == key("d") and ev.revision == 4
        await it.aclose()

    with_store(tmp_path / "s.db", body)


def test_watch_too_old_is_compacted(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        for i in range(10):
            await s.create(key(f"p{i}"), pod(f"p{i}"))
        # The window keeps the last 5 changes (6..10): a watch may start at 5 but not before.
        events = await take(s.watch("/registry/pods/", revision=5).__aiter__(), 5)
        assert [e.revision for e in events] == [6, 7, 8, 9, 10]
        with pytest.raises(Compacted) as ei:
            await s.watch("/registry/pods/", revision=4).__anext__()
        assert ei.value.requested == 4 and ei.value.oldest == 5
        assert "too old resource version: 4 (5)" in str(ei.value)

    with_store(tmp_path / "s.db", body, window=5)


def test_slow_watcher_is_ended_after_draining(tmp_path: Path) -> None:
    async def body(s: SqliteStore) -> None:
        it = s.watch("/registry/pods/", revision=0).__aiter__()
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)
        for i in range(10):  # nobody reads while these commit: the queue (3) overflows
            await s.create(key(f"p{i}"), pod(f"p{i}"))
        seen = [(await first).revision]
        async for ev in it:
            seen.append(ev.revision)
        # What it got is in order, with no gap; then it ended, short of the end.
        assert seen == list(range(1, len(seen) + 1)) and len(seen) < 10
        # Re-watching from the last revision seen picks up the rest.
        rest = await take(s.watch("/registry/pods/", revision=seen[-1]).__aiter__(), 10 - len(seen))
        assert [e.revision for e in rest] == list(range(len(seen) + 1, 11))

    with_store(tmp_path / "s.db", body, watch_queue=3)


def test_close_ends_watchers(tmp_path: Path) -> None:
    async def main() -> list[Event]:
        s = SqliteStore(tmp_path / "s.db", compact_interval=0)
        await s.start()
        got: list[Event] = []

        async def consume() -> None:
            async for ev in s.watch("/", revision=0):
                got.append(ev)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await s.create(key("a"), pod("a"))
        await s.close()
        await asyncio.wait_for(task, 10)
        return got

    assert [e.key for e in asyncio.run(main())] == [key("a")]


# --- restart, compaction ---------------------------------------------------


def test_restart_keeps_objects_revisions_and_watch_history(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    async def first(s: SqliteStore) -> None:
        for i in range(5):
            await s.create(key(f"p{i}"), pod(f"p{i}", spec={"i": i}))
        p1 = await s.get(key("p1"))
        p1["spec"]["i"] = 100
        await s.update(key("p1"), p1, expected_revision=2)
        await s.delete(key("p3"))

    with_store(db, first)

    async def second(s: SqliteStore) -> None:
        assert s.current_revision() == 7
        names = [(o["metadata"]["name"], rv(o)) for o in (await s.list("/registry/pods/")).items]
        assert names == [("p0", 1), ("p1", 6), ("p2", 3), ("p4", 5)]
        assert (await s.get(key("p1")))["spec"]["i"] == 100
        # Watchers that were at revision 5 before the restart resume without a relist.
        events = await take(s.watch("/registry/pods/", revision=5).__aiter__(), 2)
        assert [(e.type, e.revision) for e in events] == [("MODIFIED", 6), ("DELETED", 7)]
        assert events[0].prev_object["spec"]["i"] == 1 and rv(events[0].prev_object) == 2
        assert rv(events[1].prev_object) == 4
        created = await s.create(key("p5"), pod("p5"))
        assert rv(created) == 8

    with_store(db, second)


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
