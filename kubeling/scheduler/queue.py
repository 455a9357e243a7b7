"""The scheduling queue: active, back-off and unschedulable pods, as upstream's PriorityQueue.

- activeQ: pods to try now, highest priority first, then the earliest added (PrioritySort).
- backoffQ: pods that failed and wait out their back-off: 1 s doubled per attempt up to 10 s
  (upstream's podInitialBackoffSeconds / podMaxBackoffSeconds).
- unschedulable: pods that failed and wait for a cluster event that may help (a node added or
  changed, a pod leaving); an event moves them to backoffQ (if still backing off) or activeQ.
  After 5 minutes there without an event they are retried anyway (podMaxInUnschedulablePodsDuration).

If an event arrives while a pod is being scheduled, the pod goes to backoffQ when it fails
rather than waiting for the next event, so the event is not lost (upstream's moveRequestCycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_IN_UNSCHEDULABLE = 300.0
FLUSH_BACKOFF_PERIOD = 1.0  # upstream flushes backoffQ every second
FLUSH_UNSCHEDULABLE_PERIOD = 30.0


class SchedulingQueue:
    def __init__(self, *, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_in_unschedulable: float = MAX_IN_UNSCHEDULABLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self.clock = clock
        self._active: list[tuple[int, int, str]] = []
        self._in_active: set[str] = set()
        self._backoff: list[tuple[float, int, str]] = []
        self._in_backoff: set[str] = set()
        self.unschedulable: dict[str, float] = {}  # key -> when it was put there
        self.priority: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self._failed_at: dict[str, float] = {}
        self._seq = itertools.count()
        self._cycle = 0  # scheduling cycles started
        self._move_cycle = -1  # the cycle during which the last move request came
        self._popped_cycle: dict[str, int] = {}
        self._wake = asyncio.Event()

    # ---- adding --------------------------------------------------------------------------------
    def add(self, key: str, priority: int) -> None:
        """A new pod (or one whose spec changed): straight to activeQ unless it is backing off."""
        self.priority[key] = priority
        if key in self._in_active or key in self._popped_cycle:
            return
        if key in self.unschedulable or key in self._in_backoff:
            self.unschedulable.pop(key, None)
            if self.backoff_remaining(key) > 0:
                self._to_backoff(key)
                return
            self._in_backoff.discard(key)
        self._to_active(key)

    def _to_active(self, key: str) -> None:
        self._in_active.add(key)
        heapq.heappush(self._active, (-self.priority.get(key, 0), next(self._seq), key))
        self._wake.set()

    def _to_backoff(self, key: str) -> None:
        if key in self._in_backoff:
            return
        self._in_backoff.add(key)
        heapq.heappush(self._backoff, (self._failed_at.get(key, 0.0) + self.backoff_duration(key),
                                       next(self._seq), key))
        self._wake.set()  # pop() recomputes how long to sleep

    def backoff_duration(self, key: str) -> float:
        attempts = max(self.attempts.get(key, 1), 1)
        return min(self.initial_backoff * 2 ** (attempts - 1), self.max_backoff)

    def backoff_remaining(self, key: str) -> float:
        if key not in self._failed_at:
            return 0.0
        return self._failed_at[key] + self.backoff_duration(key) - self.clock()

    # ---- the scheduling cycle ------------------------------------------------------------------
    async def pop(self) -> str:
        while True:
            self.flush_backoff()
            while self._active:
                _, _, key = heapq.heappop(self._active)
                if key not in self._in_active:
                    continue  # deleted while queued
                self._in_active.discard(key)
                self._cycle += 1
                self._popped_cycle[key] = self._cycle
                self.attempts[key] = self.attempts.get(key, 0) + 1
                return key
            self._wake.clear()
            timeout = None
            if self._backoff:
                timeout = max(self._backoff[0][0] - self.clock(), 0.0) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def done(self, key: str) -> None:
        """The pod was scheduled (or dropped): forget its attempts."""
        self._popped_cycle.pop(key, None)
        self.attempts.pop(key, None)
        self._failed_at.pop(key, None)
        self.priority.pop(key, None)

    def failed(self, key: str) -> None:
        """The pod did not fit: park it until an event (or to backoffQ if one came meanwhile)."""
        cycle = self._popped_cycle.pop(key, 0)
        self._failed_at[key] = self.clock()
        if self._move_cycle >= cycle:
            self._to_backoff(key)
        else:
            self.unschedulable[key] = self.clock()

    def retry_after_error(self, key: str) -> None:
        """An error (not a fit failure), e.g. a failed bind: back off and try again."""
        self._popped_cycle.pop(key, None)
        self._failed_at[key] = self.clock()
        self._to_backoff(key)

    def delete(self, key: str) -> None:
        self._in_active.discard(key)
        self._in_backoff.discard(key)
        self.unschedulable.pop(key, None)
        self._popped_cycle.pop(key, None)
        self.attempts.pop(key, None)
        self._failed_at.pop(key, None)
        self.priority.pop(key, None)

    # ---- events --------------------------------------------------------------------------------
    def move_all(self) -> None:
        """A cluster event that may make unschedulable pods fit."""
        self._move_cycle = self._cycle
        keys = list(self.unschedulable)
        self.unschedulable.clear()
        for key in keys:
            if self.backoff_remaining(key) > 0:
                self._to_backoff(key)
            else:
                self._to_active(key)

    def flush_backoff(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if key in self._in_backoff:
                self._in_backoff.discard(key)
                self._to_active(key)

    def flush_unschedulable(self) -> None:
        now = self.clock()
        stale = [k for k, t in self.unschedulable.items() if now - t >= self.max_in_unschedulable]
        for key in stale:
            del self.unschedulable[key]
            if self.backoff_remaining(key) > 0:
                self._to_backoff(key)
            else:
                self._to_active(key)

    def active(self) -> int:
        """Pods in activeQ (ready to be tried now)."""
        return len(self._in_active)

    def pending(self) -> int:
        return len(self._in_active) + len(self._in_backoff) + len(self.unschedulable)
