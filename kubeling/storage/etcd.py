"""The etcd v3 store: upstream's key layout on a real etcd cluster, with a watch cache in front.

Keys are exactly what the API layer passes (``/registry/<resource>/<ns>/<name>``);
values are the object's JSON without ``metadata.resourceVersion``, which is the
key's etcd mod revision. Writes are etcd transactions, as upstream's etcd3 store:

- create: ``If(create_revision(k) == 0) Then(put) Else(get)`` -> KeyExists;
- update: ``If(mod(k) == expected, value(k) == new) Then() Else(If(mod(k) == expected)
  Then(put) Else(get))`` -> the outer branch makes writing back the same bytes a
  no-op without a new revision (as GuaranteedUpdate), the inner one is the CAS;
- delete: ``If(mod(k) == expected) Then(delete, prev_kv) Else(get)``; the last state
  comes back stamped with the transaction's revision (the deletion revision).

Reads and watches. One etcd watch over the *whole* keyspace (with prev_kv) feeds a
``WatchCache``: every etcd revision shows up in that stream, so the cache's
revision is etcd's revision (``current_revision``), and a write returns only once
the stream has delivered its revision, so this server's lists and watches include
its own writes. Keys under ``root`` (``/registry/``) are kept in the cache. Watches
are served from the cache (its window; older -> Compacted, 410 upstream). ``get``
reads etcd (linearizable). A list at the latest revision reads etcd's current
revision (one cheap linearizable range), waits until the stream has got there and
answers from memory, like upstream's consistent list from cache: a second API server
on the same etcd therefore sees writes made through the first. A list at an older
revision (later pages of a paged list) is an etcd range at that revision.

Connections: aetcd's generated gRPC stubs on channels this module manages
(aetcd's high-level Client has no TLS, range limits or revisions). Calls go to one
endpoint; UNAVAILABLE or a deadline moves to the next and retries within a time
budget. A retried write may have been applied by the failed attempt: a create that
then finds its own bytes, or an update that finds its own bytes at a newer revision,
counts as done. The feed watch reconnects from the revision it had; if etcd has
compacted past it meanwhile, the cache is rebuilt from a fresh list and its watchers
are ended (they re-watch and get Compacted, then relist).

Compaction: every ``compact_interval`` seconds, keep the newest ``compact_keep``
revisions (upstream's apiserver compacts every 5 minutes). Several API servers on
one etcd take turns through a version check on ``compact_rev_key``, as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc

from kubeling.storage.codec import encode, materialize
from kubeling.storage.interface import (
    Compacted,
    Conflict,
    Event,
    KeyExists,
    ListResult,
    NotFound,
    Obj,
)
from kubeling.storage.watchcache import Change, WatchCache, prefix_end

log = logging.getLogger(__name__)

COMPACT_KEY = b"compact_rev_key"  # upstream's key for coordinating compaction
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),  # notice a dead member under an idle watch
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
_LIST_PAGE = 5_000  # keys per range when loading the cache


def _range_end(prefix: str) -> bytes:
    return b"\0" if not prefix else prefix_end(prefix).encode()


def _compacted_error(e: grpc.aio.AioRpcError) -> bool:
    return e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in (e.details() or "")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Client TLS to etcd: CA bundle to trust (None: system roots), client cert and key."""

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(p: Path | None) -> bytes | None:
            return Path(p).read_bytes() if p is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.cacert), private_key=read(self.key), certificate_chain=read(self.cert)
        )


class _Endpoints:
    """gRPC channels to the configured members and the one currently in use."""

    def __init__(self, endpoints: list[str], *, tls: TLSConfig | None, timeout: float, budget: float) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = endpoints
        self.tls = tls
        self.timeout = timeout
        self.budget = budget
        self.current = 0
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._kv: dict[int, rpc.KVStub] = {}

    def channel(self, i: int) -> grpc.aio.Channel:
        ch = self._channels.get(i)
        if ch is None:
            target = self.endpoints[i]
            if self.tls is not None:
                ch = grpc.aio.secure_channel(target, self.tls.credentials(), options=_CHANNEL_OPTIONS)
            else:
                ch = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
            self._channels[i] = ch
        return ch

    def kv(self, i: int) -> rpc.KVStub:
        stub = self._kv.get(i)
        if stub is None:
            stub = self._kv[i] = rpc.KVStub(self.channel(i))
        return stub

    def failed(self, i: int) -> None:
        """Endpoint i failed: the next call goes to the next one (unless someone moved on already)."""
        if self.current == i:
            self.current = (i + 1) % len(self.endpoints)

    async def backoff(self, attempt: int) -> None:
        """Sleep only once every endpoint has been tried in this round."""
        if attempt % len(self.endpoints) == 0:
            await asyncio.sleep(min(0.05 * 2 ** (attempt // len(self.endpoints)), 1.0))

    async def kv_call(self, method: str, request: Any) -> tuple[Any, bool]:
        """A KV call with fail-over; returns (response, ambiguous) where ambiguous means an
        earlier attempt failed in a way that may have left its write applied."""
        deadline = time.monotonic() + self.budget
        ambiguous = False
        for attempt in itertools.count(1):
            i = self.current
            try:
                return await getattr(self.kv(i), method)(request, timeout=self.timeout), ambiguous
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RETRYABLE or time.monotonic() > deadline:
                    raise
                log.warning("etcd %s at %s failed (%s: %s); trying the next endpoint",
                            method, self.endpoints[i], e.code().name, e.details())
                ambiguous = True
                self.failed(i)
                await self.backoff(attempt)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for ch in self._channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
        self._channels.clear()
        self._kv.clear()


class _Behind(Exception):
    """The feed's revision was compacted away in etcd: the cache must be rebuilt."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch revision compacted (etcd compact revision {compact_revision})")
        self.compact_revision = compact_revision


def _get(key: bytes) -> rpc.RequestOp:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def _mod_is(key: bytes, revision: int) -> rpc.Compare:
    return rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=key, mod_revision=revision)


def _exists(key: bytes) -> rpc.Compare:
    return rpc.Compare(result=rpc.Compare.GREATER, target=rpc.Compare.CREATE, key=key, create_revision=0)


class EtcdStore:
    """The Store protocol on etcd v3; see the module docstring.

    ``endpoints``: ``host:port`` of the members. ``window``: how many recent changes
    watches can replay. ``watch_queue``: a watcher this far behind is ended.
    ``consistent_reads``: get/list at the latest revision reflect every write etcd
    acknowledged before the call (False: served from the cache as it stands).
    ``timeout``: per call; ``retry_budget``: how long a call keeps failing over.
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        tls: TLSConfig | None = None,
        root: str = "/registry/",
        window: int = 10_000,
        watch_queue: int = 10_000,
        compact_interval: float = 300.0,
        compact_keep: int = 1000,
        consistent_reads: bool = True,
        timeout: float = 10.0,
        retry_budget: float = 30.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.tls = tls
        self.root = root
        self._window = window
        self._watch_queue = watch_queue
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self.consistent_reads = consistent_reads
        self._timeout = timeout
        self._conn = _Endpoints(self.endpoints, tls=tls, timeout=timeout, budget=retry_budget)
        self.cache = WatchCache(window=window, queue_size=watch_queue)
        self.compact_revision = 0
        self._compact_version = 0  # version of COMPACT_KEY when this store last compacted
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._feed: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------

    async def start(self) -> None:
        target = await self._load()
        self._feed = asyncio.create_task(self._feed_forever(), name="etcd-watch-feed")
        await self._caught_up(target, wait=self._conn.budget)
        if self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_forever(), name="etcd-compactor")

    async def close(self) -> None:
        """Stop the feed and the compactor, end the watchers, close the channels."""
        if self._closed:
            return
        self._closed = True
        for task in (self._compactor, self._feed):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._wake(all_=True)
        self.cache.close()
        await self._conn.close()

    async def __aenter__(self) -> EtcdStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _load(self) -> int:
        """Fill a fresh cache; returns etcd's revision, which the feed must reach before use.

        The cache starts ``window`` revisions back when etcd still has them, so watchers
        from before a restart can resume from the replayed history.
        """
        now = (await self._range(self.root, limit=1, count_only=True)).header.revision
        start = max(now - self._window, 1)
        try:
            live, _ = await self._range_all(self.root, start)
        except Compacted:
            start = now
            live, _ = await self._range_all(self.root, start)
        cache = WatchCache(window=self._window, queue_size=self._watch_queue)
        cache.load(live, revision=start, history=[], history_start=start)
        self.cache = cache
        return now

    async def _range_all(self, prefix: str, revision: int) -> tuple[list[tuple[str, int, bytes]], int]:
        out: list[tuple[str, int, bytes]] = []
        after: str | None = None
        while True:
            resp = await self._range(prefix, start_after=after, limit=_LIST_PAGE, revision=revision)
            out.extend((kv.key.decode(), kv.mod_revision, kv.value) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, resp.header.revision
            after = out[-1][0]

    # --- the watch feed --------------------------------------------------

    async def _feed_forever(self) -> None:
        attempt = 0
        while not self._closed:
            i = self._conn.current
            try:
                await self._feed_once(i)
            except asyncio.CancelledError:
                raise
            except _Behind as e:
                log.warning("%s; rebuilding the watch cache", e)
                old = self.cache
                try:
                    await self._load()
                except Exception:  # noqa: BLE001 - retried below
                    log.exception("reloading the watch cache failed")
                    await asyncio.sleep(1)
                    continue
                old.close()  # its watchers end; re-watching from their revision gives Compacted
                attempt = 0
                continue
            except Exception as e:  # noqa: BLE001 - a broken stream: reconnect
                if self._closed:
                    return
                detail = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.aio.AioRpcError) else repr(e)
                log.warning("etcd watch at %s ended (%s); reconnecting", self.endpoints[i], detail)
                self._conn.failed(i)
            attempt += 1
            await self._conn.backoff(attempt)

    async def _feed_once(self, i: int) -> None:
        stub = rpc.WatchStub(self._conn.channel(i))
        # "hasleader": the member cancels the watch if it loses its leader (clientv3's WithRequireLeader)
        call = stub.Watch(metadata=(("hasleader", "true"),))
        try:
            await call.write(
                rpc.WatchRequest(
                    create_request=rpc.WatchCreateRequest(
                        key=b"\0", range_end=b"\0", start_revision=self.cache.revision + 1, prev_kv=True
                    )
                )
            )
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise ConnectionError("watch stream closed")
                if resp.compact_revision:
                    raise _Behind(resp.compact_revision)
                if resp.canceled:
                    raise ConnectionError(f"watch canceled: {resp.cancel_reason}")
                if resp.events:
                    self._apply(resp.events)
        finally:
            call.cancel()

    def _apply(self, events: Any) -> None:
        """Feed one watch response into the cache; keys outside root only move the revision."""
        cache, root = self.cache, self.root
        changes: list[Change] = []
        for ev in events:
            kv = ev.kv
            rev = kv.mod_revision
            key = kv.key.decode()
            if not key.startswith(root):
                if changes:
                    cache.apply(changes)
                    changes = []
                cache.revision = max(cache.revision, rev)
                continue
            prev = ev.prev_kv if ev.HasField("prev_kv") else None
            prev_data, prev_rev = (prev.value, prev.mod_revision) if prev is not None else (None, 0)
            if prev_data is None and (hit := cache.raw(key)) is not None:
                prev_rev, prev_data = hit  # prev_kv can be missing when etcd compacted it meanwhile
            if ev.type == rpc.Event.PUT:
                if kv.create_revision == rev:
                    changes.append(Change("ADDED", key, rev, kv.value))
                else:
                    changes.append(Change("MODIFIED", key, rev, kv.value, prev_data, prev_rev))
            elif prev_data is not None:
                changes.append(Change("DELETED", key, rev, prev_data, prev_data, prev_rev))
            else:  # a delete of a key this cache never saw: nothing to report
                cache.revision = max(cache.revision, rev)
        if changes:
            cache.apply(changes)
        self._wake()

    def _wake(self, *, all_: bool = False) -> None:
        rev, waiters = self.cache.revision, self._waiters
        while waiters and (all_ or waiters[0][0] <= rev):
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)

    async def _caught_up(self, revision: int, *, wait: float | None = None) -> None:
        """Until the feed has delivered ``revision`` (bounded: the write itself is durable)."""
        if self.cache.revision >= revision or self._closed:
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (revision, next(self._seq), fut))
        try:
            await asyncio.wait_for(fut, wait if wait is not None else self._conn.budget)
        except TimeoutError:
            log.warning("etcd watch feed has not reached revision %d (at %d)", revision, self.cache.revision)

    # --- reads ---------------------------------------------------------

    def current_revision(self) -> int:
        return self.cache.revision

    async def get(self, key: str) -> Obj | None:
        hit = await self.get_raw(key)
        return materialize(hit[1], hit[0]) if hit is not None else None

    async def get_raw(self, key: str) -> tuple[int, bytes] | None:
        """(revision, stored bytes) of the live object at key (see SqliteStore.get_raw)."""
        if not self.consistent_reads and key.startswith(self.root):
            return self.cache.raw(key)
        resp, _ = await self._conn.kv_call("Range", rpc.RangeRequest(key=key.encode()))
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return kv.mod_revision, kv.value

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
        cached = prefix.startswith(self.root) or self.root.startswith(prefix)
        if cached and (revision <= 0 or revision >= self.cache.revision):
            if self.consistent_reads:
                now = (await self._range(self.root, limit=1, count_only=True)).header.revision
                await self._caught_up(now)
            if revision <= 0 or revision >= self.cache.revision:
                return self.cache.list(prefix, limit=limit, start_after=start_after, raw=raw)
        resp = await self._range(prefix, start_after=start_after, limit=limit, revision=max(revision, 0))
        pairs = [(kv.mod_revision, kv.value) for kv in resp.kvs]
        items = [] if raw else [materialize(value, rev) for rev, value in pairs]
        remaining = max(resp.count - len(pairs), 0) if resp.more else 0
        return ListResult(
            items=items,
            revision=revision if revision > 0 else resp.header.revision,
            continue_key=resp.kvs[-1].key.decode() if remaining and pairs else None,
            remaining=remaining,
            raw=pairs if raw else None,
        )

    async def _range(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int = 0,
        revision: int = 0,
        count_only: bool = False,
    ) -> Any:
        start = prefix
        if start_after is not None and start_after >= prefix:
            start = start_after + "\0"  # the smallest key after start_after
        req = rpc.RangeRequest(
            key=start.encode() or b"\0",
            range_end=_range_end(prefix),
            limit=max(limit, 0),
            revision=revision,
            count_only=count_only,
        )
        try:
            resp, _ = await self._conn.kv_call("Range", req)
        except grpc.aio.AioRpcError as e:
            if _compacted_error(e):
                self.compact_revision = max(self.compact_revision, revision + 1)
                raise Compacted(revision, self.compact_revision) from e
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:  # a future revision: the latest will do
                return await self._range(prefix, start_after=start_after, limit=limit, count_only=count_only)
            raise
        return resp

    def watch(self, prefix: str, *, revision: int) -> AsyncIterator[Event]:
        return self.cache.watch(prefix, revision=revision)

    # --- writes --------------------------------------------------------

    async def create(self, key: str, obj: Obj) -> Obj:
        k, data = key.encode(), encode(obj)
        req = rpc.TxnRequest(
            compare=[rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=k, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=data))],
            failure=[_get(k)],
        )
        resp, ambiguous = await self._conn.kv_call("Txn", req)
        if resp.succeeded:
            rev = resp.header.revision
        else:
            kvs = resp.responses[0].response_range.kvs
            if not (ambiguous and kvs and kvs[0].value == data and kvs[0].version == 1):
                raise KeyExists(key, f"{key} already exists")
            rev = kvs[0].mod_revision  # our earlier attempt did it
        await self._caught_up(rev)
        return materialize(data, rev)

    async def update(self, key: str, obj: Obj, *, expected_revision: int) -> Obj:
        """See Store.update. Writing back the current bytes adds no revision (as upstream)."""
        k, data = key.encode(), encode(obj)
        cas = rpc.TxnRequest(
            compare=[_mod_is(k, expected_revision), _exists(k)],  # a missing key's mod revision is 0
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=data))],
            failure=[_get(k)],
        )
        req = rpc.TxnRequest(
            compare=[
                _mod_is(k, expected_revision),
                rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE, key=k, value=data),
            ],
            success=[],
            failure=[rpc.RequestOp(request_txn=cas)],
        )
        resp, ambiguous = await self._conn.kv_call("Txn", req)
        if resp.succeeded:
            return materialize(data, expected_revision)
        inner = resp.responses[0].response_txn
        if inner.succeeded:
            rev = resp.header.revision
        else:
            kvs = inner.responses[0].response_range.kvs
            if not kvs:
                raise NotFound(key, f"{key} not found")
            cur = kvs[0]
            if not (ambiguous and cur.value == data and cur.mod_revision > expected_revision):
                raise Conflict(key, materialize(cur.value, cur.mod_revision))
            rev = cur.mod_revision  # our earlier attempt did it
        await self._caught_up(rev)
        return materialize(data, rev)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Obj:
        k = key.encode()
        drop = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True))
        compare = [_exists(k)] if expected_revision is None else [_mod_is(k, expected_revision), _exists(k)]
        resp, _ = await self._conn.kv_call("Txn", rpc.TxnRequest(compare=compare, success=[drop], failure=[_get(k)]))
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise NotFound(key, f"{key} not found")
            raise Conflict(key, materialize(kvs[0].value, kvs[0].mod_revision))
        prev = resp.responses[0].response_delete_range.prev_kvs
        if not prev:  # cannot happen: the compare saw the key in the same transaction
            raise NotFound(key, f"{key} not found")
        rev = resp.header.revision
        await self._caught_up(rev)
        return materialize(prev[0].value, rev)

    # --- compaction ----------------------------------------------------

    async def compact(self, *, keep: int | None = None, coordinate: bool = False) -> int:
        """Compact etcd's history older than the newest ``keep`` revisions; returns the
        revision compacted to (0 if there was nothing to do or another server just did it).

        With ``coordinate``, only one of several stores sharing the etcd compacts per
        round: a transaction on COMPACT_KEY's version picks the first (upstream's scheme).
        """
        keep = self._compact_keep if keep is None else keep
        target = self.cache.revision - keep
        if target <= self.compact_revision or target < 1:
            return 0
        if coordinate:
            vcmp = rpc.Compare(
                result=rpc.Compare.EQUAL, target=rpc.Compare.VERSION, key=COMPACT_KEY, version=self._compact_version
            )
            put = rpc.RequestOp(request_put=rpc.PutRequest(key=COMPACT_KEY, value=str(target).encode()))
            resp, _ = await self._conn.kv_call(
                "Txn", rpc.TxnRequest(compare=[vcmp], success=[put], failure=[_get(COMPACT_KEY)])
            )
            if not resp.succeeded:
                kvs = resp.responses[0].response_range.kvs
                self._compact_version = kvs[0].version if kvs else 0
                return 0
            self._compact_version += 1
        try:
            await self._conn.kv_call("Compact", rpc.CompactionRequest(revision=target))
        except grpc.aio.AioRpcError as e:
            if not _compacted_error(e):
                raise
        self.compact_revision = max(self.compact_revision, target)
        return target

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                rev = await self.compact(coordinate=True)
                if rev:
                    log.info("compacted etcd up to revision %d", rev)
            except Exception:
                log.exception("etcd compaction failed")


async def raw_etcd_put_rate(
    endpoints: list[str], *, seconds: float = 2.0, concurrency: int = 32, tls: TLSConfig | None = None
) -> float:
    """Plain puts per second from ``concurrency`` tasks (a baseline for the store's write rate).

    Writes ``/kubeling-bench/raw/...`` keys and deletes them afterwards.
    """
    conn = _Endpoints(list(endpoints), tls=tls, timeout=10.0, budget=10.0)
    n = 0
    value = b'{"kind":"Bench"}'
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal n
        i = 0
        while time.perf_counter() < stop:
            await conn.kv_call("Put", rpc.PutRequest(key=f"/kubeling-bench/raw/{w}/{i}".encode(), value=value))
            i += 1
            n += 1

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
        prefix = b"/kubeling-bench/raw/"
        await conn.kv_call("DeleteRange", rpc.DeleteRangeRequest(key=prefix, range_end=_range_end(prefix.decode())))
        return n / elapsed
    finally:
        await conn.close()
