"""The in-memory side of a store: live objects, a window of recent changes, and watchers.

Upstream's apiserver puts a watch cache in front of etcd so that gets, lists at
the latest revision and watches never touch the database. This is the same idea
for any backend: the backend commits a batch of writes, then hands the committed
``Change`` rows to ``WatchCache.apply`` on the event loop, which updates the live
state, appends to the event window and feeds every matching watcher in one go.
Because all of that happens in one loop callback, a list at revision R and a
watch from R always line up: nothing is seen twice and nothing is missed.

Objects are kept as the stored JSON bytes (without ``metadata.resourceVersion``)
and decoded on the way out, so every get and list caller gets its own dict to mutate.
Watch events are made once per change and shared by every watcher (read-only; their objects are
decoded on first use, and a watcher that sends plain JSON takes the stored bytes instead),
and ``peek`` serves a shared read-only dict per key and revision (admission's lookups).

Slow watchers: each watcher has a bounded queue. When a commit finds it full the
watcher is ended (after it drains what it has), like upstream's cacher ends a
watcher that cannot keep up; the client re-watches from the last revision it saw,
which replays the rest from the window, or gets 410 and relists.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from kubeling.storage.codec import materialize, stamped
from kubeling.storage.interface import Compacted, Event, ListResult, Obj

log = logging.getLogger(__name__)

# The largest code point sorts after every key: the upper bound of the empty prefix.
_TOP = chr(0x10FFFF)
# shared copies peek keeps (a cluster of 5,000 nodes has 15,000 pods, nodes and leases written all the
# time; the in-process informers hold the same dicts, so an entry costs little more than itself)
_PEEK_ENTRIES = 16384
_ROUTES = 4096  # key directories whose watchers are remembered (one per resource and namespace)
_SHARED_EVENTS = 512  # the newest changes keep their decoded event for the next watcher
# the test suite's servers check every shared copy peek hands out against the stored bytes
_VERIFY_SHARED = os.environ.get("KUBELING_VERIFY_SHARED") == "1"


SHARED_EVENT_MODIFIED = "the shared object of watch event %s at revision %d was modified by a watcher"


def _check_intact(ch: Change) -> None:
    """Watchers (in-process informers among them) share each event's decoded object and must not change
    it; the test suite's servers check every one when it leaves the window, and at close."""
    if ch.event is not None and not ch.event.shared_object_intact():
        log.error(SHARED_EVENT_MODIFIED, ch.key, ch.revision)


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with prefix."""
    if not prefix:
        return _TOP
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(slots=True)
class Change:
    """One committed write, as the backend recorded it."""

    type: str  # ADDED / MODIFIED / DELETED
    key: str
    revision: int
    data: bytes  # the new state; for DELETED the last state
    prev_data: bytes | None = None
    prev_revision: int = 0
    event: Event | None = field(default=None, repr=False, compare=False)
    # the writer's own dict of the new state (without resourceVersion; nobody changes it any more),
    # kept while the change is among the newest: its event's object is that, stamped, not a decode
    written: Obj | None = field(default=None, repr=False, compare=False)

    def to_event(self) -> Event:
        decoded = stamped(self.written, self.revision) if self.written is not None else None
        return Event(self.type, self.key, self.revision, self.data, self.prev_data, self.prev_revision,  # type: ignore[arg-type]
                     decoded=decoded)


class _Watcher:
    __slots__ = ("prefix", "queue", "closed")

    def __init__(self, prefix: str, size: int) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(size)
        self.closed = False

    def end(self) -> None:
        self.closed = True
        # Wakes a consumer blocked on an empty queue; a full one drains, then sees `closed`.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


def _offer(w: _Watcher, ch: Change) -> None:
    if w.closed:
        return
    try:
        w.queue.put_nowait(ch)
    except asyncio.QueueFull:
        w.closed = True  # too slow: ended once it drains


class WatchCache:
    """Live state + event window + watchers; used only from the event loop."""

    def __init__(self, *, window: int = 10_000, queue_size: int = 10_000) -> None:
        self.revision = 0
        self._window = max(1, window)
        self._queue_size = max(1, queue_size)
        self._live: dict[str, tuple[int, bytes]] = {}
        self._keys: list[str] = []  # sorted live keys
        self._events: deque[Change] = deque()
        self._start = 0  # every change with revision > _start is in _events
        self._watchers: set[_Watcher] = set()
        # a key's directory (up to its last "/") -> the watchers of its keys: those whose prefix
        # covers the whole directory, and those (a longer prefix) each key is checked against
        self._routes: dict[str, tuple[list[_Watcher], list[_Watcher]]] = {}
        self._peeked: dict[str, tuple[int, Obj]] = {}  # key -> (revision, shared decoded object)
        self._decoded: deque[Change] = deque()  # changes holding a decoded event, oldest first
        self._written: deque[Change] = deque()  # changes holding the writer's dict, oldest first

    # --- filling ---------------------------------------------------------

    def load(
        self,
        live: Iterable[tuple[str, int, bytes]],
        *,
        revision: int,
        history: Sequence[Change],
        history_start: int,
    ) -> None:
        """Initial state: live objects at ``revision``, and the changes after ``history_start``."""
        self._live = {key: (rev, data) for key, rev, data in live}
        self._keys = sorted(self._live)
        self.revision = revision
        self._events = deque(history[-self._window :])
        skipped = len(history) - len(self._events)
        self._start = history[skipped - 1].revision if skipped > 0 else history_start

    def apply(self, changes: Sequence[Change]) -> None:
        """Committed changes, in revision order: update state, window and watchers."""
        live, keys, events, written, routes = self._live, self._keys, self._events, self._written, self._routes
        for ch in changes:
            if ch.type == "DELETED":
                if live.pop(ch.key, None) is not None:
                    i = bisect.bisect_left(keys, ch.key)
                    del keys[i]
            else:
                if ch.key not in live:
                    bisect.insort(keys, ch.key)
                live[ch.key] = (ch.revision, ch.data)
            if len(events) >= self._window:
                self._start = events.popleft().revision
            events.append(ch)
            if ch.written is not None:  # bounded as the decoded events are
                written.append(ch)
                if len(written) > _SHARED_EVENTS:
                    written.popleft().written = None
            key = ch.key
            directory = key[:key.rfind("/") + 1]
            route = routes.get(directory)
            if route is None:
                if len(routes) >= _ROUTES:
                    routes.clear()
                route = routes[directory] = self._route(directory)
            covering, checked = route
            for w in covering:
                _offer(w, ch)
            for w in checked:
                if key.startswith(w.prefix):
                    _offer(w, ch)
            self.revision = ch.revision

    def _route(self, directory: str) -> tuple[list[_Watcher], list[_Watcher]]:
        """The watchers a change in ``directory`` may go to (see _routes)."""
        covering, checked = [], []
        for w in self._watchers:
            if directory.startswith(w.prefix):
                covering.append(w)
            elif w.prefix.startswith(directory):
                checked.append(w)
        return covering, checked

    def close(self) -> None:
        """End every watcher (they finish after draining what they have)."""
        for w in list(self._watchers):
            w.end()
        if _VERIFY_SHARED:
            for ch in self._decoded:
                _check_intact(ch)

    # --- reading ---------------------------------------------------------

    @property
    def oldest_watchable(self) -> int:
        """The oldest revision a watch may start from."""
        return self._start

    def raw(self, key: str) -> tuple[int, bytes] | None:
        return self._live.get(key)

    def get(self, key: str) -> Obj | None:
        hit = self._live.get(key)
        return materialize(hit[1], hit[0]) if hit else None

    def _shared_event(self, ch: Change) -> Event:
        """The change as a watch event, made once for every watcher (they must not mutate it).

        Only the newest changes keep theirs, so a window of decoded objects never piles up in memory;
        a watcher far behind makes its own.
        """
        ev = ch.event
        if ev is None:
            ev = ch.event = ch.to_event()
            ch.written = None  # the event has it now
            decoded = self._decoded
            decoded.append(ch)
            if len(decoded) > _SHARED_EVENTS:
                dropped = decoded.popleft()
                if _VERIFY_SHARED:
                    _check_intact(dropped)
                dropped.event = None
        return ev

    def peek(self, key: str) -> Obj | None:
        """The live object at key, decoded once per revision and shared: callers must not mutate it."""
        hit = self._live.get(key)
        if hit is None:
            return None
        memo = self._peeked.get(key)
        if memo is not None and memo[0] == hit[0]:
            if _VERIFY_SHARED and memo[1] != materialize(hit[1], hit[0]):
                raise AssertionError(f"the shared copy of {key} at {hit[0]} was modified")
            return memo[1]
        obj = materialize(hit[1], hit[0])
        self._memo(key, hit[0], obj)
        return obj

    def _memo(self, key: str, revision: int, obj: Obj) -> None:
        """Keep ``obj`` as key's shared copy; past _PEEK_ENTRIES the least recently stored goes."""
        peeked = self._peeked
        if peeked.pop(key, None) is None and len(peeked) >= _PEEK_ENTRIES:
            del peeked[next(iter(peeked))]
        peeked[key] = (revision, obj)

    def remember(self, key: str, revision: int, obj: Obj) -> None:
        """``obj`` is the live object at key as of ``revision`` (the writer's own dict, stamped, which
        nobody changes any more): peek serves it without decoding the stored bytes."""
        hit = self._live.get(key)
        if hit is not None and hit[0] == revision:
            self._memo(key, revision, obj)

    def list(self, prefix: str, *, limit: int = 0, start_after: str | None = None, raw: bool = False) -> ListResult:
        keys, live = self._keys, self._live
        lo = bisect.bisect_left(keys, prefix)
        if start_after is not None:
            lo = max(lo, bisect.bisect_right(keys, start_after))
        hi = bisect.bisect_left(keys, prefix_end(prefix), lo)
        end = hi if limit <= 0 else min(hi, lo + limit)
        remaining = hi - end
        continue_key = keys[end - 1] if remaining and end > lo else None
        if raw:
            return ListResult([], self.revision, continue_key, remaining, [live[key] for key in keys[lo:end]])
        items = []
        for key in keys[lo:end]:
            rev, data = live[key]
            items.append(materialize(data, rev))
        return ListResult(items=items, revision=self.revision, continue_key=continue_key, remaining=remaining)

    def watch(self, prefix: str, *, revision: int) -> AsyncIterator[Event]:
        """Changes under prefix after ``revision``, replayed from the window, then live.

        ``revision`` 0 means from now: the revision when watch() is called, even if the
        first iteration comes later (the window fills the gap).
        """
        return self._watch(prefix, revision or self.revision)

    async def _watch(self, prefix: str, revision: int) -> AsyncIterator[Event]:
        if revision < self.revision and revision < self._start:
            raise Compacted(revision, self._start)
        # Replay and registration happen with no await in between: no gap, no duplicate.
        backlog: list[Change] = []
        for ch in reversed(self._events):
            if ch.revision <= revision:
                break
            if ch.key.startswith(prefix):
                backlog.append(ch)
        backlog.reverse()
        w = _Watcher(prefix, self._queue_size)
        self._watchers.add(w)
        self._routes.clear()
        try:
            for ch in backlog:
                yield self._shared_event(ch)
            while True:
                if w.closed and w.queue.empty():
                    return
                ch = await w.queue.get()
                if ch is None:
                    return
                if ch.revision > revision:  # a watch from a future revision skips older ones
                    yield self._shared_event(ch)
        finally:
            self._watchers.discard(w)
            self._routes.clear()
