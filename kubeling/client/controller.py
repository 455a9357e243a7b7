"""The worker loop every controller shares: take a key, sync it, retry it with back-off on failure.

``run_controller`` is client-go's ``processNextWorkItem``/``handleErr`` pair: a failed sync is
logged and re-queued rate-limited (so a broken object does not spin), a successful one resets
the key's back-off with ``forget``, and ``done`` always releases the key so it can be processed
again. Conflicts (409) are expected under optimistic concurrency and are logged quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from kubeling.client.rest import is_conflict, is_not_found
from kubeling.client.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

SyncFn = Callable[[Hashable], Awaitable[None]]


async def run_controller(name: str, queue: WorkQueue, sync_fn: SyncFn, workers: int = 1) -> None:
    """Run ``workers`` workers until cancelled or the queue shuts down; cancelling shuts the queue down."""
    tasks = [asyncio.create_task(_worker(name, queue, sync_fn), name=f"{name}-worker-{i}")
             for i in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    finally:
        queue.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _worker(name: str, queue: WorkQueue, sync_fn: SyncFn) -> None:
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await sync_fn(key)
        except asyncio.CancelledError:
            queue.done(key)
            raise
        except Exception as e:
            requeues = queue.num_requeues(key)
            if is_conflict(e) or is_not_found(e):
                # optimistic concurrency and objects vanishing under us are routine: retry quietly
                log.debug("%s: %s syncing %r, retrying: %s", name, getattr(e, "reason", ""), key, e)
            else:
                log.warning("%s: error syncing %r (retry %d): %s", name, key, requeues + 1, e,
                            exc_info=not hasattr(e, "code"))
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        queue.done(key)
