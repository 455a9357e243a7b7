"""A rate-limited work queue of keys, with client-go's workqueue semantics.

Controllers turn events into keys ("ns/name") and process keys, not events, so bursts collapse:

* a key is queued at most once (``add`` of a queued key is a no-op);
* a key is handed to one worker at a time: a key added while it is being processed is held back
  and queued again when the worker calls ``done(key)``;
* ``add_after`` delays an add (the earliest pending time wins);
* ``add_rate_limited`` delays by the rate limiter: per-key exponential back-off (5 ms doubling to
  1000 s) combined with an overall token bucket (10 qps, burst 100), as client-go's
  DefaultControllerRateLimiter; ``forget`` resets a key's back-off after a successful sync.

After ``shutdown()`` new adds are ignored, the keys still queued are handed out, and then ``get``
raises :class:`ShutDown` (workers should return on it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from typing import Protocol


class ShutDown(Exception):  # noqa: N818 - client-go's name
    """Raised by ``WorkQueue.get`` once the queue is shut down and drained."""


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...
    def forget(self, item: Hashable) -> None: ...
    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base * 2**failures per item, capped at max_delay."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp > 62:  # 2**exp would only overflow the cap anyway
            return self.max_delay
        return min(self.base_delay * (2 ** exp), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (golang.org/x/time/rate reservations): qps refill, burst capacity."""

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock=time.monotonic) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters; requeue counts come from the first that counts."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10, 100))


class WorkQueue:
    """See the module docstring. All methods but ``get`` are synchronous and loop-safe only."""

    def __init__(self, name: str = "", *, rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()        # queued, or re-added while processing
        self._processing: set[Hashable] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._waiting: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: Hashable, seconds: float) -> None:
        if self._shutting_down:
            return
        if seconds <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + seconds
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready:
                return
            pending[1].cancel()
        self._waiting[key] = (ready, loop.call_at(ready, self._fire, key))

    def _fire(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    async def get(self) -> Hashable:
        """The next key, marked as processing; raises ShutDown after shutdown once drained."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # we were woken but cannot take the key: pass it on
                else:
                    fut.cancel()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def is_processing(self, key: Hashable) -> bool:
        return key in self._processing

    def pending_delayed(self) -> int:
        """Keys waiting in add_after / add_rate_limited (for metrics and tests)."""
        return len(self._waiting)
