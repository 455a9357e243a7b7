"""The API server's garbage-collection policy (kubeling/apiserver/gctuning.py): while it runs, Python
starts only young collections by itself, a cycle that outlived them is reclaimed by the periodic full
collection, and the collector's settings come back when it stops."""

from __future__ import annotations

import asyncio
import gc
import weakref

from kubeling.apiserver import gctuning


class Node:
    """A container object that can be part of a cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _old_cycle() -> weakref.ref[Node]:
    """A two-object cycle, unreachable, that has been through the young generations into the oldest."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gc.collect(1)  # reachable now: survives generations 0 and 1 into generation 2
    del a, b
    return ref


def _burst() -> list[list[int]]:
    """Enough new, surviving container objects for Python to start every kind of collection on its own."""
    return [[i] for i in range(400_000)]


def test_bursts_start_full_collections_under_pythons_own_thresholds() -> None:
    """The control for the test below: without the policy the same burst does reclaim the cycle."""
    gc.collect()
    ref = _old_cycle()
    kept = _burst()
    assert ref() is None
    del kept


async def _run_policy(full_every: float, body) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.get_running_loop().create_task(gctuning.keep_collections_short(full_every=full_every))
    try:
        await asyncio.sleep(0)  # the policy is in place after its first step
        await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.unfreeze()


def test_only_young_collections_are_automatic_while_serving() -> None:
    before = gc.get_threshold()

    async def body() -> None:
        young, middle, full = gc.get_threshold()
        assert young == gctuning.YOUNG_THRESHOLD
        assert middle == before[1]
        assert full == gctuning.NO_AUTOMATIC_FULL
        # an old unreachable cycle outlives the automatic collections of a burst of long-lived objects
        # (with Python's own thresholds a full collection reclaims it during the burst)
        ref = _old_cycle()
        kept = _burst()
        assert ref() is not None
        del kept

    asyncio.run(_run_policy(3600, body))
    assert gc.get_threshold() == before  # stopping gives Python its own settings back
    gc.collect()


def test_periodic_full_collection_reclaims_old_cycles() -> None:
    async def body() -> None:
        ref = _old_cycle()
        assert ref() is not None
        for _ in range(200):  # a full collection comes every 0.05 s
            await asyncio.sleep(0.05)
            if ref() is None:
                break
        assert ref() is None

    asyncio.run(_run_policy(0.05, body))


def test_start_up_objects_are_frozen_and_thawed_for_the_full_collection() -> None:
    async def body() -> None:
        assert gc.get_freeze_count() > 0  # what existed at start is out of the young collections' way
        ref = _old_cycle()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if ref() is None:
                break
        assert ref() is None
        assert gc.get_freeze_count() > 0  # frozen again after the full collection

    asyncio.run(_run_policy(0.05, body))
