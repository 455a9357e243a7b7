"""The watch cache hands each change to exactly the watchers whose prefix the key starts with.

It finds them through a table of key directories (kubeling/storage/watchcache.py, ``_routes``)
instead of testing every watcher's prefix; these tests hold it to the plain rule, with watchers
that come and go while the table is filled and prefixes of every shape (a resource, a namespace,
one object's key, a prefix that ends inside a name)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as hs

from kubeling.storage.watchcache import Change, WatchCache

_KEYS = [f"/registry/{res}/{ns}/{name}" for res in ("pods", "podtemplates", "leases")
         for ns in ("a", "ab", "b") for name in ("x", "xy", "y")] + ["/registry/nodes/n1", "/registry/nodes/n10"]
_PREFIXES = sorted({k[:i] for k in _KEYS for i in range(1, len(k) + 1)})


class _Collector:
    """A watcher that records the keys of the changes it gets."""

    def __init__(self, cache: WatchCache, prefix: str) -> None:
        self.prefix = prefix
        self.got: list[str] = []
        self.expected: list[str] = []
        self.events = cache.watch(prefix, revision=cache.revision)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.events:
            self.got.append(event.key)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from(_PREFIXES), hs.lists(hs.sampled_from(_KEYS), max_size=6)),
                min_size=1, max_size=5),
       hs.integers(0, 4))
def test_each_change_reaches_exactly_the_watchers_whose_prefix_it_starts_with(
        rounds: list[tuple[str, list[str]]], stop_at: int) -> None:
    """Round by round a watcher joins, then some keys change; one watcher leaves midway. Every
    watcher gets, in order, the changes made while it watched whose key starts with its prefix."""

    async def scenario() -> None:
        cache = WatchCache()
        rev = 0
        watching: list[_Collector] = []
        for i, (prefix, keys) in enumerate(rounds):
            watching.append(_Collector(cache, prefix))
            await _settle()  # registered before the next changes
            if i == stop_at and len(watching) > 1:
                gone = watching.pop(0)
                await gone.stop()
                assert gone.got == gone.expected, (gone.prefix, gone.got, gone.expected)
            changes = []
            for key in keys:
                rev += 1
                changes.append(Change("ADDED", key, rev, b"{}"))
                for w in watching:
                    if key.startswith(w.prefix):
                        w.expected.append(key)
            cache.apply(changes)
            await _settle()
        for w in watching:
            await w.stop()
            assert w.got == w.expected, (w.prefix, w.got, w.expected)

    asyncio.run(scenario())


def test_a_watcher_added_after_a_directory_was_routed_gets_its_changes() -> None:
    async def scenario() -> None:
        cache = WatchCache()
        pods = _Collector(cache, "/registry/pods/")
        await _settle()
        cache.apply([Change("ADDED", "/registry/pods/a/x", 1, b"{}")])  # routes /registry/pods/a/
        one = _Collector(cache, "/registry/pods/a/y")  # a single object's watch, joining late
        await _settle()
        cache.apply([Change("ADDED", "/registry/pods/a/y", 2, b"{}"), Change("ADDED", "/registry/pods/a/z", 3, b"{}")])
        await _settle()
        assert one.got == ["/registry/pods/a/y"]
        assert pods.got == ["/registry/pods/a/x", "/registry/pods/a/y", "/registry/pods/a/z"]
        await one.stop()
        cache.apply([Change("ADDED", "/registry/pods/a/y", 4, b"{}")])  # after it left: routed again
        await _settle()
        assert one.got == ["/registry/pods/a/y"]
        assert pods.got[-1] == "/registry/pods/a/y"
        await pods.stop()

    asyncio.run(scenario())
