"""Recording core/v1 Events about objects, as client-go's legacy event recorder does.

``EventRecorder.event(obj, type, reason, message)`` never blocks or raises: events go into a
bounded queue written by a few background tasks (errors are logged, and when the queue is full the
event is dropped, like the upstream broadcaster; drops are logged at most every 10 s, with a count).
Several writers share the store's group commits, so a burst (a Scheduled event per pod) keeps up;
writes of identical events stay in order, one at a time, so their count aggregates. Upstream's correlator is followed in small:
an identical event (same object, type, reason, message) repeated within 10 minutes bumps the
existing Event's ``count`` and ``lastTimestamp`` with a patch instead of creating a new one, and
a per-object token bucket (burst 25, one token per 5 minutes) drops spam.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

AGGREGATE_WINDOW = 600.0   # seconds an identical event is counted on the same Event object
CACHE_SIZE = 4096          # upstream's maxLruCacheEntries
SPAM_BURST = 25
SPAM_QPS = 1.0 / 300.0
QUEUE_SIZE = 1000          # upstream's maxQueuedEvents
WRITERS = 8                # concurrent event writes
DROP_LOG_EVERY = 10.0      # seconds between "dropped events" log lines


_NOW: list[Any] = [None, ""]  # [the second, its RFC 3339 text]: formatted once per second


def now_rfc3339() -> str:
    second = int(time.time())
    if _NOW[0] != second:
        _NOW[0], _NOW[1] = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _NOW[1]


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first_timestamp: str
    last_seen: float


class EventRecorder:
    """Fire-and-forget Event writer for one component; see the module docstring."""

    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._queue_size = queue_size
        self._writers: list[asyncio.Task[None]] = []
        self._key_locks: dict[tuple[Any, ...], list[Any]] = {}  # aggregation key -> [lock, users]
        self._drops_logged_at = 0.0
        self._drops_unlogged = 0
        self._seen: OrderedDict[tuple[Any, ...], _Seen] = OrderedDict()
        self._spam: OrderedDict[tuple[Any, ...], tuple[float, float]] = OrderedDict()
        self._last_ns = 0
        self.dropped = 0

    def event(self, obj: dict[str, Any], type: str, reason: str, message: str) -> None:  # noqa: A002
        """Record an event about ``obj`` (``type`` is "Normal" or "Warning")."""
        if type not in (NORMAL, WARNING):
            log.warning("event type %r is not Normal or Warning; recording anyway", type)
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        if len(self._writers) < WRITERS or any(w.done() for w in self._writers):
            loop = asyncio.get_running_loop()
            self._writers = [w for w in self._writers if not w.done()]
            self._writers += [loop.create_task(self._write_loop(), name="event-recorder")
                              for _ in range(WRITERS - len(self._writers))]
        ref = involved_object(obj)
        if not self._allow(ref, type, reason):
            self.dropped += 1
            return
        try:
            self._queue.put_nowait({"ref": ref, "type": type, "reason": reason, "message": message,
                                    "time": now_rfc3339()})
        except asyncio.QueueFull:
            self.dropped += 1
            self._drops_unlogged += 1
            now = time.monotonic()
            if now - self._drops_logged_at >= DROP_LOG_EVERY:
                log.warning("event queue full: dropped %d events (latest: %s %s on %s)", self._drops_unlogged,
                            type, reason, ref.get("name"))
                self._drops_logged_at, self._drops_unlogged = now, 0

    def eventf(self, obj: dict[str, Any], type: str, reason: str, fmt: str, *args: Any) -> None:  # noqa: A002
        self.event(obj, type, reason, fmt % args if args else fmt)

    async def flush(self) -> None:
        """Wait until every queued event has been written (for tests and shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        for writer in self._writers:
            writer.cancel()
        for writer in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._writers = []

    # -- internals ------------------------------------------------------------------------------

    def _allow(self, ref: dict[str, Any], type_: str, reason: str) -> bool:
        """Per-object token bucket, as upstream's EventSourceObjectSpamFilter."""
        key = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"),
               ref.get("apiVersion"), type_, reason)
        now = time.monotonic()
        tokens, last = self._spam.get(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) * SPAM_QPS)
        self._spam[key] = (tokens - 1 if tokens >= 1 else tokens, now)
        self._spam.move_to_end(key)
        if len(self._spam) > CACHE_SIZE:
            self._spam.popitem(last=False)
        return tokens >= 1

    def _name_for(self, obj_name: str) -> str:
        # upstream: "<name>.<UnixNano in hex>"; keep names unique within this process
        ns = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = ns
        return f"{obj_name}.{ns:x}"

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            key = _aggregation_key(item)
            # identical events one at a time, in queue order (the first creates, the next patch)
            entry = self._key_locks.setdefault(key, [asyncio.Lock(), 0])
            entry[1] += 1
            try:
                async with entry[0]:
                    await self._write(item, key)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - events are best effort
                log.warning("unable to write event %s on %s: %s", item["reason"], item["ref"].get("name"), e)
            finally:
                entry[1] -= 1
                if not entry[1]:
                    del self._key_locks[key]
                self._queue.task_done()

    async def _write(self, item: dict[str, Any], key: tuple[Any, ...]) -> None:
        ref = item["ref"]
        namespace = ref.get("namespace") or "default"
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.last_seen < AGGREGATE_WINDOW:
            seen.count += 1
            seen.last_seen = now
            self._seen.move_to_end(key)
            patch = {"count": seen.count, "lastTimestamp": item["time"], "message": item["message"]}
            try:
                await self.client.patch("events", seen.name, patch, seen.namespace, patch_type="strategic")
                return
            except ApiError as e:
                if e.code != 404:
                    raise
                # the Event was deleted (TTL or by hand): create a fresh one below
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": self._name_for(ref.get("name") or "unknown"), "namespace": namespace},
            "involvedObject": ref,
            "reason": item["reason"],
            "message": item["message"],
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": item["time"],
            "lastTimestamp": item["time"],
            "count": 1,
            "type": item["type"],
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
        }
        created = await self.client.create("events", event, namespace)
        self._seen[key] = _Seen(created["metadata"]["name"], namespace, 1, item["time"], now)
        self._seen.move_to_end(key)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)


def _aggregation_key(item: dict[str, Any]) -> tuple[Any, ...]:
    ref = item["ref"]
    return (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"), ref.get("apiVersion"),
            item["type"], item["reason"], item["message"])


def involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    """An ObjectReference to ``obj`` (kind, namespace, name, uid, apiVersion, resourceVersion)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": meta.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}
