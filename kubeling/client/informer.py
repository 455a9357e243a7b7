"""Informers: a watched, locally cached view of one resource, shared by the controllers of a process.

An informer lists the resource (paginated), then watches from the list's resourceVersion and
applies each event to its cache before calling the handlers ``fn(event_type, obj, old)`` in the
event loop (``"ADDED"``, ``"MODIFIED"``, ``"DELETED"``; ``old`` is the cached object before the
change, or None). When a watch ends it re-watches from the last resourceVersion seen (bookmarks
included); when the server answers 410 Gone it relists and delivers the difference to the cache
as synthetic events, so handlers never miss a change. Connection errors back off 0.5 s .. 30 s.

Listers (``get``, ``list``, ``by_index``) return the cached dicts themselves: callers must not
mutate them; use :func:`copy` to get a private deep copy before changing an object.

Items from a List answer lack ``kind``/``apiVersion`` on the wire; the informer fills them in from
the List's own kind so every cached object carries its type (event recorders and owner references
need it).

Per event the work is O(1) plus the handlers (indexes are maintained incrementally), so
informers over thousands of nodes and tens of thousands of pods stay cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import orjson

from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any], dict[str, Any] | None], Any]
IndexFunc = Callable[[dict[str, Any]], Iterable[str]]

NAMESPACE_INDEX = "namespace"
MIN_WATCH_TIMEOUT = 300  # seconds; each watch asks for 300..600 s like client-go's reflector


def copy(obj: Any) -> Any:
    """A deep copy of a JSON-shaped object (fast: an orjson round trip)."""
    return orjson.loads(orjson.dumps(obj))


def object_key(obj: dict[str, Any]) -> str:
    """client-go's MetaNamespaceKeyFunc: ``"ns/name"``, or ``"name"`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def split_key(key: str) -> tuple[str | None, str]:
    """``"ns/name"`` -> ``("ns", "name")``; ``"name"`` -> ``(None, "name")``."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)


def _namespace_index(obj: dict[str, Any]) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def _rv(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class Informer:
    """List-then-watch cache of one resource with handlers and indexes; see the module docstring."""

    def __init__(self, client: Client, resource: str, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 indexers: dict[str, IndexFunc] | None = None, *,
                 resync_period: float | None = None, page_size: int = 500) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.page_size = page_size
        self.resource_version: str | None = None
        self._cache: dict[str, dict[str, Any]] = {}
        self._handlers: list[Handler] = []
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: _namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self._index_values: dict[str, dict[str, list[str]]] = {NAMESPACE_INDEX: {}}
        self._synced = asyncio.Event()
        self._kind: tuple[str, str] | None = None  # (apiVersion, kind) learned from the List
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    # -- handlers and indexers -------------------------------------------------------------------

    def add_handler(self, fn: Handler) -> None:
        """Register a handler; once synced, it first receives ADDED for every cached object."""
        self._handlers.append(fn)
        if self._synced.is_set():
            only = [fn]
            for obj in list(self._cache.values()):
                self._emit("ADDED", obj, None, only)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        if name in self._indexers:
            # Shared informers: an index name means the same thing to every controller; the
            # first registration wins.
            return
        self._indexers[name] = fn
        self._indices[name] = {}
        self._index_values[name] = {}
        for key, obj in self._cache.items():
            self._index_one(name, fn, key, obj)

    # -- listers ------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(key)

    def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace is None:
            return list(self._cache.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def keys(self) -> list[str]:
        return list(self._cache)

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        keys = self._indices[name].get(value)
        return [self._cache[k] for k in keys] if keys else []

    def index_keys(self, name: str, value: str) -> list[str]:
        return list(self._indices[name].get(value) or ())

    def __len__(self) -> int:
        return len(self._cache)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, *, _iterations: int | None = None) -> None:
        """List and watch until cancelled; ``_iterations`` bounds the watch rounds (for tests)."""
        resync = asyncio.create_task(self._resync_loop()) if self.resync_period else None
        backoff = 0.5
        need_list = True
        rounds = 0
        try:
            while _iterations is None or rounds < _iterations:
                rounds += 1
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    if await self._watch():
                        backoff = 0.5
                    else:  # a watch that ended at once with nothing: don't spin on the server
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 30.0)
                except ApiError as e:
                    if e.code == 410:
                        log.debug("%s: watch expired (%s), relisting", self.resource, e.message)
                        need_list = True
                        continue
                    log.warning("%s: list/watch failed: %s", self.resource, e)
                    need_list = True
                    await asyncio.sleep(backoff * random.uniform(1.0, 1.5))
                    backoff = min(backoff * 2, 30.0)
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                    log.info("%s: connection to API server failed: %r; retrying in %.1fs",
                             self.resource, e, backoff)
                    need_list = need_list or self.resource_version is None
                    await asyncio.sleep(backoff * random.uniform(1.0, 1.5))
                    backoff = min(backoff * 2, 30.0)
        finally:
            if resync is not None:
                resync.cancel()

    async def _list(self) -> None:
        answer = await self.client.list_all(self.resource, self.namespace, label_selector=self.label_selector,
                                            field_selector=self.field_selector, page_size=self.page_size)
        list_kind = answer.get("kind") or ""
        if list_kind.endswith("List") and answer.get("apiVersion"):
            self._kind = (answer["apiVersion"], list_kind[:-4])
        items = answer.get("items") or []
        fresh: dict[str, dict[str, Any]] = {}
        for obj in items:
            self._fill_kind(obj)
            fresh[object_key(obj)] = obj
        self._replace(fresh)
        self.resource_version = (answer.get("metadata") or {}).get("resourceVersion")
        self._synced.set()

    def _replace(self, fresh: dict[str, dict[str, Any]]) -> None:
        """Swap in a full listing, delivering the difference as events."""
        for key in [k for k in self._cache if k not in fresh]:
            old = self._delete(key)
            if old is not None:
                self._emit("DELETED", old, old)
        for key, obj in fresh.items():
            old = self._cache.get(key)
            if old is not None and _rv(old) == _rv(obj) and _rv(obj) is not None:
                continue
            self._store(key, obj)
            self._emit("ADDED" if old is None else "MODIFIED", obj, old)

    async def _watch(self) -> bool:
        """One watch until the server ends it; False if it ended at once without any event."""
        timeout = int(MIN_WATCH_TIMEOUT * (1 + random.random()))
        loop = asyncio.get_running_loop()
        started, events = loop.time(), 0
        async for event in self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                             label_selector=self.label_selector,
                                             field_selector=self.field_selector, timeout_seconds=timeout):
            events += 1
            self.apply_event(event)
        return events > 0 or loop.time() - started > 1.0

    def apply_event(self, event: dict[str, Any]) -> None:
        """Apply one watch event to the cache and call the handlers (public for tests and fakes)."""
        etype = event.get("type")
        obj = event.get("object") or {}
        rv = _rv(obj)
        if etype == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            log.warning("%s: unexpected watch event type %r", self.resource, etype)
            return
        self._fill_kind(obj)
        key = object_key(obj)
        if etype == "DELETED":
            old = self._delete(key)
            self._emit("DELETED", obj, old)
        else:
            old = self._cache.get(key)
            if old is not None and rv is not None and _rv(old) == rv:
                return  # the same revision again (a re-watch overlapping): nothing changed
            self._store(key, obj)
            self._emit("ADDED" if old is None else "MODIFIED", obj, old)
        if rv:
            self.resource_version = rv

    async def _resync_loop(self) -> None:
        assert self.resync_period
        while True:
            await asyncio.sleep(self.resync_period)
            if self._synced.is_set():
                for obj in list(self._cache.values()):
                    self._emit("MODIFIED", obj, obj)

    # -- cache and indexes ---------------------------------------------------------------------

    def _fill_kind(self, obj: dict[str, Any]) -> None:
        if self._kind is not None and "kind" not in obj:
            obj["apiVersion"], obj["kind"] = self._kind
        elif self._kind is None and obj.get("kind") and obj.get("apiVersion"):
            self._kind = (obj["apiVersion"], obj["kind"])

    def _store(self, key: str, obj: dict[str, Any]) -> None:
        """Cache ``obj`` at key and index it (a key not cached yet has no index values to drop)."""
        new = key not in self._cache
        self._cache[key] = obj
        if new:
            for name, fn in self._indexers.items():
                self._index_one(name, fn, key, obj)
            return
        for name, fn in self._indexers.items():
            have = self._index_values[name].get(key)
            if have is not None:
                try:
                    if list(fn(obj)) == have:
                        continue  # most updates (status) leave index values alone: no set churn
                except Exception:
                    pass  # _index_one logs it
            self._unindex_one(name, key)
            self._index_one(name, fn, key, obj)

    def _delete(self, key: str) -> dict[str, Any] | None:
        old = self._cache.pop(key, None)
        if old is not None:
            for name in self._indexers:
                self._unindex_one(name, key)
        return old

    def _index_one(self, name: str, fn: IndexFunc, key: str, obj: dict[str, Any]) -> None:
        try:
            values = list(fn(obj))
        except Exception:
            log.exception("%s: indexer %s failed on %s", self.resource, name, key)
            return
        if not values:
            return
        self._index_values[name][key] = values
        index = self._indices[name]
        for v in values:
            index.setdefault(v, set()).add(key)

    def _unindex_one(self, name: str, key: str) -> None:
        values = self._index_values[name].pop(key, None)
        if not values:
            return
        index = self._indices[name]
        for v in values:
            keys = index.get(v)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[v]

    def _emit(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None,
              handlers: list[Handler] | None = None) -> None:
        """Call the handlers (all, or those given); one that fails or is a coroutine function is logged."""
        for fn in self._handlers if handlers is None else handlers:  # one frame for them all: many per event
            try:
                result = fn(etype, obj, old)
                if result is not None and asyncio.iscoroutine(result):
                    result.close()
                    raise TypeError("informer handlers must be plain functions (enqueue keys, don't await)")
            except Exception:
                log.exception("%s: handler %r failed on %s %s", self.resource, fn, etype, object_key(obj))


class InformerFactory:
    """One shared informer per (resource, namespace, selectors) for all components of a process."""

    def __init__(self, client: Client, *, resync_period: float | None = None) -> None:
        self.client = client
        self.resync_period = resync_period
        self._informers: dict[tuple[str, str | None, str | None, str | None], Informer] = {}
        self._tasks: dict[tuple[str, str | None, str | None, str | None], asyncio.Task[None]] = {}

    def informer(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, *,
                 indexers: dict[str, IndexFunc] | None = None) -> Informer:
        key = (resource, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(self.client, resource, namespace, label_selector,
                                                  field_selector, resync_period=self.resync_period)
        for name, fn in (indexers or {}).items():
            inf.add_indexer(name, fn)
        return inf

    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def start(self) -> asyncio.Future[None]:
        """Start every informer not yet running (call again after creating more).

        The informers start at once; the returned (already finished) future lets callers write
        either ``factory.start()`` or ``await factory.start()``.
        """
        for key, inf in self._informers.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(inf.run(), name=f"informer:{key[0]}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
