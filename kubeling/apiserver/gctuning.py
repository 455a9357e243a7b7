"""Python's full garbage collections, kept off the request path of a long-running API server.

A full (generation 2) collection walks every container object the process holds. With thousands of
objects in memory (the in-process components' informer caches, the catalogue and schemas) that is a
pause of ~100 ms, and under write load it comes every few seconds: the create p99 is that pause.
Objects that outlive start-up, or a few seconds, are nearly all long-lived, so they are moved to the
permanent generation (``gc.freeze``), which collections skip; the collector then only ever walks
recent objects. Cycles among frozen objects that later become garbage are not collected while
frozen, so once every ``full_every`` seconds everything is thawed and collected in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from aiohttp import web

log = logging.getLogger(__name__)

FREEZE_EVERY = 5.0  # seconds between freezes of what survived
FULL_EVERY = 600.0  # seconds between full collections of everything (reclaims frozen cycles)


async def keep_collections_short(*, freeze_every: float = FREEZE_EVERY, full_every: float = FULL_EVERY) -> None:
    """Freeze now (after start-up) and every ``freeze_every`` seconds; a full collection every ``full_every``."""
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    last_full = loop.time()
    while True:
        await asyncio.sleep(freeze_every)
        if loop.time() - last_full >= full_every:
            gc.unfreeze()
            gc.collect()
            last_full = loop.time()
        else:
            gc.collect(1)  # young garbage goes first: only survivors are frozen
        gc.freeze()


def install(app: web.Application) -> None:
    """Run ``keep_collections_short`` from the app's start-up (after bootstrap) until its clean-up."""
    key = web.AppKey("kubeling-gc-tuning", asyncio.Task)

    async def start(app: web.Application) -> None:
        app[key] = asyncio.get_running_loop().create_task(keep_collections_short(), name="gc-tuning")

    async def stop(app: web.Application) -> None:
        task = app.get(key)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gc.unfreeze()  # hand the objects back to the collector

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
