"""The default store: one append-only SQLite log table, after kine (k3s).

Every write appends a row to ``kine``; its autoincrement ``id`` is the revision
(the objects' resourceVersion). A key's state is its newest row; a delete appends
a tombstone (``deleted = 1``, carrying the last state). ``UNIQUE(name,
prev_revision)`` makes two writes based on the same row impossible, whatever else
goes wrong. Compaction deletes rows replaced by a newer row and old tombstones, in
bounded batches, and records how far it got in ``meta.compact_rev``.

Durability: WAL journal with ``synchronous=FULL``, so a write is fsynced before
its caller hears back; a crash at any point loses no acknowledged write and
leaves no half write (a transaction commits whole or not at all).

Speed: all SQLite writing happens in one writer thread, off the event loop. The
loop hands it the writes of each of its turns together (one wake-up of the thread
for all of them); the writer takes whatever is queued (group commit), runs it in one transaction
with a check-before-insert for each (it is the only writer, so the check holds),
commits once, and hands the committed rows back to the loop in one callback,
which resolves each caller and feeds the watch cache. Gets, latest lists and
watches are served from the watch cache in memory; lists at an older revision
(the later pages of a paged list) read SQLite in a reader thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeling.storage.codec import encode, materialize, stamped
from kubeling.storage.interface import (
    Compacted,
    Conflict,
    Event,
    KeyExists,
    ListResult,
    NotFound,
    Obj,
    StorageError,
)
from kubeling.storage.watchcache import Change, WatchCache, prefix_end

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB,
    old_value BLOB
);
-- The only index: every index entry carries the row id too, so it also answers
-- "newest row per name"; a second (name, id) index would cost every commit more pages.
CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_INSERT = (
    "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# The newest row of each key (as of a revision), live ones only, in key order.
_LIST_AT = """
SELECT kv.name, kv.id, kv.value FROM kine AS kv
JOIN (SELECT MAX(id) AS id FROM kine
      WHERE name >= ? AND name < ? AND name > ? AND id <= ? GROUP BY name) AS m ON m.id = kv.id
WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?
"""
_COUNT_AT = """
SELECT COUNT(*) FROM kine AS kv
JOIN (SELECT MAX(id) AS id FROM kine
      WHERE name >= ? AND name < ? AND name > ? AND id <= ? GROUP BY name) AS m ON m.id = kv.id
WHERE kv.deleted = 0
"""
# The newest row of every key: live ones, and the tombstones a re-create must follow.
_NEWEST = """
SELECT kv.name, kv.id, kv.create_revision, kv.deleted, kv.value FROM kine AS kv
JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) AS m ON m.id = kv.id
"""
_HISTORY = """
SELECT kv.id, kv.name, kv.created, kv.deleted, kv.prev_revision, kv.value, p.value
FROM kine AS kv LEFT JOIN kine AS p ON p.id = kv.prev_revision
WHERE kv.id > ? ORDER BY kv.id
"""
# Rows replaced by a row in (lo, hi], and tombstones in (lo, hi].
_COMPACT = """
DELETE FROM kine WHERE id IN (
    SELECT prev_revision FROM kine WHERE id > ? AND id <= ? AND prev_revision != 0
    UNION SELECT id FROM kine WHERE id > ? AND id <= ? AND deleted != 0)
"""


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection with the store's pragmas; transactions are explicit (BEGIN/COMMIT)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def raw_sqlite_commit_rate(path: Path | str, seconds: float = 2.0) -> float:
    """Single-row commits per second on this disk with the store's pragmas (a baseline).

    ``path`` is a scratch file: it gets the store's table and the benchmark's rows.
    """
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, value)"
                " VALUES (?, 1, 0, 0, 0, ?)",
                (f"/bench/raw/{n}", b'{"kind":"Bench"}'),
            )
            conn.execute("COMMIT")
            n += 1
        return n / elapsed
    finally:
        conn.close()


@dataclass(slots=True)
class _Write:
    kind: str  # create / update / delete
    key: str
    data: bytes | None
    expected: int | None
    future: asyncio.Future[Any]
    obj: Obj | None = None  # what data encodes (create, update): the change's event object, stamped


@dataclass(slots=True)
class _Call:
    """Work the writer runs alone in its own transaction (load, compaction)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Loaded:
    revision: int
    compact_revision: int
    live: list[tuple[str, int, int, bytes]]  # name, revision, create_revision, value
    history: list[Change] = field(default_factory=list)
    history_start: int = 0


_STOP = object()
_Undo = tuple[str, tuple[int, int, bytes] | None, int | None]  # key, live entry, tombstone before


class _Writer(threading.Thread):
    """The only thread that writes the database; see the module docstring."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, *, max_batch: int) -> None:
        super().__init__(name="kubeling-sqlite-writer", daemon=True)
        self.path = path
        self.loop = loop
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.deliver: Callable[
            [list[Change], list[tuple[asyncio.Future[Any], Any, BaseException | None]]], None
        ]
        self.conn: sqlite3.Connection | None = None
        self.rev = 0
        # key -> (revision, create_revision, value) of live keys: the writer's own view
        self.live: dict[str, tuple[int, int, bytes]] = {}
        # key -> id of its tombstone, for deleted keys whose rows compaction has not removed:
        # a re-create takes it as prev_revision (kine's rule, and what keeps the UNIQUE index happy)
        self.tombstones: dict[str, int] = {}

    def run(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is _STOP:
                break
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            batch: list[_Write] = list(item)
            pending_call = None
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                if isinstance(nxt, _Call):
                    pending_call = nxt
                    break
                batch.extend(nxt)
            self._run_batch(batch)
            if pending_call is not None:
                self._run_call(pending_call)
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.close()
            self.conn = None

    def _reply(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self.loop.call_soon_threadsafe(fn, *args)

    def _run_call(self, call: _Call) -> None:
        try:
            if self.conn is None:
                self.conn = connect(self.path)
            result, exc = call.fn(self.conn), None
        except BaseException as e:  # handed to the waiting caller
            result, exc = None, e
        self._reply(_settle, call.future, result, exc)

    def _run_batch(self, batch: list[_Write]) -> None:
        conn = self.conn
        assert conn is not None, "load() runs first"
        rev0 = self.rev
        undo: list[_Undo] = []
        changes: list[Change] = []
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for w in batch:
                try:
                    result = self._write(conn, w, undo, changes)
                    outcomes.append((w.future, result, None))
                except StorageError as e:
                    outcomes.append((w.future, None, e))
            conn.execute("COMMIT")
        except Exception as e:  # an I/O error: nothing of this batch happened
            log.exception("sqlite write batch failed")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.rev = rev0
            for key, live, tomb in reversed(undo):
                _restore(self.live, key, live)
                _restore(self.tombstones, key, tomb)
            changes = []
            outcomes = [(w.future, None, e) for w in batch]
        self._reply(self.deliver, changes, outcomes)

    def _write(
        self,
        conn: sqlite3.Connection,
        w: _Write,
        undo: list[_Undo],
        changes: list[Change],
    ) -> Any:
        """One write inside the batch's transaction; returns what the caller gets (as raw parts)."""
        key, cur = w.key, self.live.get(w.key)
        rev = self.rev + 1
        if w.kind == "create":
            if cur is not None:
                raise KeyExists(key, f"{key} already exists")
            prev = self.tombstones.get(key, 0)
            self._insert(conn, (rev, key, 1, 0, rev, prev, w.data))
            new = (rev, rev, w.data)
            change = Change("ADDED", key, rev, w.data, written=w.obj)  # type: ignore[arg-type]
        else:
            if cur is None:
                raise NotFound(key, f"{key} not found")
            if w.expected is not None and w.expected != cur[0]:
                e = Conflict(key)
                e.current = (cur[0], cur[2])  # type: ignore[assignment]  # decoded on the loop
                raise e
            if w.kind == "update":
                if w.data == cur[2]:
                    return (cur[0], cur[2])  # no change: no new revision, as upstream
                self._insert(conn, (rev, key, 0, 0, cur[1], cur[0], w.data))
                new = (rev, cur[1], w.data)
                change = Change("MODIFIED", key, rev, w.data, cur[2], cur[0], written=w.obj)  # type: ignore[arg-type]
            else:
                self._insert(conn, (rev, key, 0, 1, cur[1], cur[0], cur[2]))
                new = None
                change = Change("DELETED", key, rev, cur[2], cur[2], cur[0])
        undo.append((key, cur, self.tombstones.get(key)))
        if new is None:
            del self.live[key]
            self.tombstones[key] = rev
        else:
            self.live[key] = new
            self.tombstones.pop(key, None)
        self.rev = rev
        changes.append(change)
        return (rev, change.data)

    def _insert(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        try:
            conn.execute(_INSERT, row)
        except sqlite3.IntegrityError as e:
            # Only if the writer's view were wrong; the statement was undone, the batch goes on.
            raise Conflict(row[1]) from e


def _restore(d: dict[str, Any], key: str, before: Any) -> None:
    if before is None:
        d.pop(key, None)
    else:
        d[key] = before


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _load(window: int, writer: _Writer) -> Callable[[sqlite3.Connection], _Loaded]:
    def load(conn: sqlite3.Connection) -> _Loaded:
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
        rev = row[0] if row else 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'compact_rev'").fetchone()
        compact = row[0] if row else 0
        live, tombstones = [], {}
        for n, i, c, deleted, v in conn.execute(_NEWEST):
            if deleted:
                tombstones[n] = i
            else:
                live.append((n, i, c, bytes(v)))
        # Rows above the compact revision are all there: replay them into the watch window.
        start = max(compact, rev - window)
        history = []
        for rid, name, created, deleted, prev_rev, value, prev_value in conn.execute(_HISTORY, (start,)):
            value = bytes(value)
            if created:
                history.append(Change("ADDED", name, rid, value))
            else:
                prev = bytes(prev_value) if prev_value is not None else None
                kind = "DELETED" if deleted else "MODIFIED"
                history.append(Change(kind, name, rid, value, prev, prev_rev if prev is not None else 0))
        writer.rev = rev
        writer.live = {n: (i, c, v) for n, i, c, v in live}
        writer.tombstones = tombstones
        return _Loaded(rev, compact, live, history, start)

    return load


def _compact_range(lo: int, hi: int, writer: _Writer) -> Callable[[sqlite3.Connection], int]:
    def compact(conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(_COMPACT, (lo, hi, lo, hi)).rowcount
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compact_rev', ?)", (hi,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # Tombstones up to hi are gone, and every older row of their keys with them.
        tombs = writer.tombstones
        for key in [k for k, i in tombs.items() if i <= hi]:
            del tombs[key]
        return n

    return compact


class SqliteStore:
    """The Store protocol on a SQLite file; see the module docstring.

    ``window``: how many recent changes watches can replay. ``compact_keep``: the
    newest revisions compaction never touches. ``compact_interval``: seconds
    between compactions (0: only when ``compact()`` is called). ``watch_queue``: a
    watcher that falls this many events behind is ended.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        window: int = 10_000,
        watch_queue: int = 10_000,
        compact_interval: float = 300.0,
        compact_keep: int = 1000,
        compact_batch: int = 1000,
        max_batch: int = 1000,
    ) -> None:
        self.path = Path(path)
        self._window = window
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._compact_batch = max(1, compact_batch)
        self._max_batch = max_batch
        self._pending: list[_Write] = []  # submitted this turn of the loop, not yet handed over
        self.cache = WatchCache(window=window, queue_size=watch_queue)
        self.compact_revision = 0
        self._writer: _Writer | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._compact_lock = asyncio.Lock()
        self._closed = False

    # --- lifecycle -----------------------------------------------------

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = _Writer(self.path, loop, max_batch=self._max_batch)
        self._writer.deliver = self._deliver
        self._writer.start()
        try:
            loaded: _Loaded = await self._call(_load(self._window, self._writer))
        except BaseException:
            self._writer.queue.put(_STOP)
            self._closed = True
            raise
        self.compact_revision = loaded.compact_revision
        self.cache.load(
            ((n, i, v) for n, i, _c, v in loaded.live),
            revision=loaded.revision,
            history=loaded.history,
            history_start=loaded.history_start,
        )
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="kubeling-sqlite-reader")
        if self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_forever(), name="sqlite-compactor")

    async def close(self) -> None:
        """Finish queued writes, stop the threads, end the watchers."""
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        if self._writer is not None:
            self._hand_over()  # writes submitted this turn of the loop go first
            self._writer.queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            await asyncio.sleep(0)  # let the writer's last deliveries run
        if self._reader is not None:
            if self._reader_conn is not None:
                self._reader.submit(self._reader_conn.close)
            self._reader.shutdown(wait=True)
        self.cache.close()

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- reads ---------------------------------------------------------

    def current_revision(self) -> int:
        return self.cache.revision

    async def get(self, key: str) -> Obj | None:
        return self.cache.get(key)

    async def get_raw(self, key: str) -> tuple[int, bytes] | None:
        """(revision, stored bytes) of the live object at key: a caller that needs two private
        copies (read-modify-write) decodes them twice instead of decoding and deep-copying."""
        return self.cache.raw(key)

    def peek(self, key: str) -> Obj | None:
        """The live object at key as a shared, read-only dict (cheap repeated lookups: admission)."""
        return self.cache.peek(key)

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int = 0,
        raw: bool = False,
    ) -> ListResult:
        """See Store.list; a revision at or above the current one means the latest."""
        if revision <= 0 or revision >= self.cache.revision:
            return self.cache.list(prefix, limit=limit, start_after=start_after, raw=raw)
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._list_at, prefix, limit, start_after, revision, raw)

    def _list_at(self, prefix: str, limit: int, start_after: str | None, revision: int, raw: bool) -> ListResult:
        """Runs in the reader thread: the state at an older revision, from the log."""
        if self._reader_conn is None:
            self._reader_conn = connect(self.path)
        conn = self._reader_conn
        end = prefix_end(prefix)
        after = start_after if start_after is not None and start_after >= prefix else ""
        conn.execute("BEGIN")  # one snapshot: the compact check and the rows agree
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'compact_rev'").fetchone()
            compact = row[0] if row else 0
            if revision < compact:
                raise Compacted(revision, compact)
            rows = conn.execute(
                _LIST_AT, (prefix, end, after, revision, limit if limit > 0 else -1)
            ).fetchall()
            remaining = 0
            if limit > 0 and len(rows) == limit:
                remaining = conn.execute(_COUNT_AT, (prefix, end, rows[-1][0], revision)).fetchone()[0]
        finally:
            conn.execute("COMMIT")
        continue_key = rows[-1][0] if remaining else None
        if raw:
            return ListResult([], revision, continue_key, remaining, [(i, bytes(v)) for _n, i, v in rows])
        items = [materialize(bytes(v), i) for _n, i, v in rows]
        return ListResult(items=items, revision=revision, continue_key=continue_key, remaining=remaining)

    def watch(self, prefix: str, *, revision: int) -> AsyncIterator[Event]:
        return self.cache.watch(prefix, revision=revision)

    # --- writes --------------------------------------------------------

    async def create(self, key: str, obj: Obj) -> Obj:
        """See Store.create. Returns ``obj`` stamped with its resourceVersion in a new top-level and
        metadata dict (decoding the stored bytes again would cost a full copy); the caller's dict
        is left as it was, the nested values are shared with it. The watch cache keeps the result as
        the shared copy ``peek`` answers: neither it nor ``obj`` may be changed afterwards."""
        rev, _data = await self._submit("create", key, encode(obj), None, obj)
        created = stamped(obj, rev)
        self.cache.remember(key, rev, created)  # the next update's old state, without a decode
        return created

    async def update(self, key: str, obj: Obj, *, expected_revision: int) -> Obj:
        """See Store.update; returns ``obj`` stamped, as create. Writing back the current object
        unchanged adds no revision (as upstream)."""
        rev, _data = await self._submit("update", key, encode(obj), expected_revision, obj)
        updated = stamped(obj, rev)
        self.cache.remember(key, rev, updated)  # the next update's old state, without a decode
        return updated

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Obj:
        rev, data = await self._submit("delete", key, None, expected_revision)
        return materialize(data, rev)

    async def _submit(
        self, kind: str, key: str, data: bytes | None, expected: int | None, obj: Obj | None = None
    ) -> tuple[int, bytes]:
        if self._closed or self._writer is None:
            raise RuntimeError("store is not running")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        pending = self._pending
        pending.append(_Write(kind, key, data, expected, fut, obj))
        if len(pending) == 1:  # the first write of this turn of the loop: hand them over after it
            loop.call_soon(self._hand_over)
        try:
            return await fut
        except Conflict as e:
            if isinstance(e.current, tuple):
                rev, raw = e.current
                e.current = materialize(raw, rev)
            raise

    def _hand_over(self) -> None:
        """The writes submitted during one turn of the event loop go to the writer together: one
        wake-up of its thread and, when it is idle, one transaction and one fsync for all of them."""
        pending, self._pending = self._pending, []
        if pending and self._writer is not None:
            self._writer.queue.put(pending)

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self._writer is not None
        fut = asyncio.get_running_loop().create_future()
        self._writer.queue.put(_Call(fn, fut))
        return await fut

    def _deliver(
        self,
        changes: list[Change],
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        """On the loop, after a commit: state and watchers first, then the callers."""
        try:
            if changes:
                self.cache.apply(changes)
        except Exception:  # never leave a caller hanging; the write itself is durable
            log.exception("applying committed changes to the watch cache failed")
        for fut, result, exc in outcomes:
            _settle(fut, result, exc)

    # --- compaction ----------------------------------------------------

    async def compact(self, *, keep: int | None = None) -> int:
        """Drop replaced rows and tombstones older than the newest ``keep`` revisions.

        Runs in batches of ``compact_batch`` revisions, one transaction each, between
        ordinary writes. Returns how many rows were deleted.
        """
        keep = self._compact_keep if keep is None else keep
        async with self._compact_lock:
            target = self.cache.revision - keep
            deleted = 0
            while self.compact_revision < target:
                lo = self.compact_revision
                hi = min(lo + self._compact_batch, target)
                deleted += await self._call(_compact_range(lo, hi, self._writer))
                self.compact_revision = hi
            return deleted

    async def _compact_forever(self) -> None:
        while True:
            try:
                n = await self.compact()
                if n:
                    log.info("compacted %d rows up to revision %d", n, self.compact_revision)
            except Exception:
                log.exception("compaction failed")
            await asyncio.sleep(self._compact_interval)
