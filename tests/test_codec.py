"""The stored form of objects (kubeling/storage/codec.py): encode, materialize and the
resourceVersion spliced into stored bytes, which watch frames are made of."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as hs

from kubeling.storage.codec import encode, materialize, stamped, stamped_json
from kubeling.storage.interface import Event

_text = hs.text(hs.characters(blacklist_categories=("Cs",)), max_size=12)
_json = hs.recursive(hs.none() | hs.booleans() | hs.integers(-2**53, 2**53) | _text,
                     lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(_text, inner, max_size=3),
                     max_leaves=12)


@hs.composite
def api_objects(draw: Any) -> dict[str, Any]:
    meta = draw(hs.dictionaries(_text, _json, max_size=4))
    if draw(hs.booleans()):
        meta["resourceVersion"] = str(draw(hs.integers(1, 10**9)))
    obj = {"spec": draw(_json), "metadata": meta}
    # sometimes apiVersion/kind carry characters only the decoding path can stamp
    obj["kind"] = draw(hs.sampled_from(["Pod", "Odd\"Kind", "Back\\slash"]))
    obj["apiVersion"] = draw(hs.sampled_from(["v1", "apps/v1", "x.io/v1alpha1"]))
    if draw(hs.booleans()):
        obj = dict(reversed(list(obj.items())))
    return obj


@given(api_objects(), hs.integers(1, 2**62))
def test_stamped_json_is_the_materialized_object(obj: dict[str, Any], rev: int) -> None:
    data = encode(obj)
    assert orjson.loads(stamped_json(data, rev)) == materialize(data, rev)
    assert "resourceVersion" not in orjson.loads(data)["metadata"]
    # the writer's dict, stamped (peek's copy, a write's event object) is the same object too
    before = orjson.dumps(obj)
    assert stamped(obj, rev) == materialize(data, rev)
    assert orjson.dumps(obj) == before  # the caller's dict is left alone


def test_encode_puts_the_head_first_and_leaves_the_callers_dict_alone() -> None:
    obj = {"spec": {"x": 1}, "metadata": {"name": "a", "resourceVersion": "7"}, "kind": "Pod", "apiVersion": "v1"}
    before = orjson.dumps(obj)
    data = encode(obj)
    assert data == b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"x":1}}'
    assert orjson.dumps(obj) == before
    assert stamped_json(data, 42) == (b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"42",'
                                      b'"name":"a"},"spec":{"x":1}}')


def test_empty_metadata_is_stamped_without_a_trailing_comma() -> None:
    data = encode({"apiVersion": "v1", "kind": "Pod", "metadata": {}})
    assert stamped_json(data, 5) == b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"5"}}'


def test_event_decodes_once_and_only_when_asked() -> None:
    new = encode({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"v": 2}})
    old = encode({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"v": 1}})
    ev = Event("MODIFIED", "/registry/pods/ns/a", 9, new, old, 8)
    assert orjson.loads(ev.json()) == {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "a", "resourceVersion": "9"}, "spec": {"v": 2}}
    assert ev._object is None and ev._prev is None  # json() decoded nothing
    assert ev.object is ev.object and ev.object["metadata"]["resourceVersion"] == "9"
    assert ev.prev_object is not None and ev.prev_object["spec"] == {"v": 1}
    assert ev.prev_object["metadata"]["resourceVersion"] == "8"
    assert Event("ADDED", "k", 1, new).prev_object is None


def test_a_writes_own_dict_is_the_shared_copy_and_a_changed_one_is_caught(monkeypatch: Any) -> None:
    import pytest

    from kubeling.storage import watchcache
    from kubeling.storage.watchcache import Change, WatchCache

    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "3"}, "spec": {"v": 1}}
    cache = WatchCache()
    cache.apply([Change("ADDED", "/registry/pods/ns/a", 3, encode(obj))])
    cache.remember("/registry/pods/ns/a", 3, obj)
    assert cache.peek("/registry/pods/ns/a") is obj  # served without decoding
    cache.remember("/registry/pods/ns/a", 2, {"stale": True})  # not the live revision: ignored
    assert cache.peek("/registry/pods/ns/a") is obj
    monkeypatch.setattr(watchcache, "_VERIFY_SHARED", True)
    assert cache.peek("/registry/pods/ns/a") is obj
    obj["spec"]["v"] = 2  # someone wrote into the shared copy
    with pytest.raises(AssertionError, match="was modified"):
        cache.peek("/registry/pods/ns/a")


def test_a_changed_shared_watch_object_is_reported(monkeypatch: Any, caplog: Any) -> None:
    """Watchers share each event's decoded object (in-process informers keep it in their caches); the
    test suite's servers report one that was changed when it leaves the shared window, and at close."""
    import asyncio
    import logging

    from kubeling.storage import watchcache
    from kubeling.storage.watchcache import Change, WatchCache

    monkeypatch.setattr(watchcache, "_VERIFY_SHARED", True)
    monkeypatch.setattr(watchcache, "_SHARED_EVENTS", 2)

    def pod(name: str, v: int) -> bytes:
        return encode({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"v": v}})

    async def scenario() -> None:
        cache = WatchCache()
        events = cache.watch("/registry/pods/", revision=0)
        cache.apply([Change("ADDED", f"/registry/pods/ns/p{i}", i + 1, pod(f"p{i}", i)) for i in range(4)])
        seen = [await events.__anext__() for _ in range(2)]
        assert seen[0].object["spec"]["v"] == 0
        seen[1].object["spec"]["v"] = 99  # a watcher wrote into the shared object
        seen += [await events.__anext__() for _ in range(2)]  # p1 leaves the window of two
        seen[3].object["spec"]["v"] = 42  # ... and into one still in the window at close
        cache.close()
        await events.aclose()  # type: ignore[attr-defined]

    with caplog.at_level(logging.ERROR, logger="kubeling.storage.watchcache"):
        asyncio.run(scenario())
    reported = [r.getMessage() for r in caplog.records]
    assert any("/registry/pods/ns/p1 at revision 2 was modified" in m for m in reported), reported
    assert any("/registry/pods/ns/p3 at revision 4 was modified" in m for m in reported), reported
    assert not any("ns/p0 " in m or "ns/p2 " in m for m in reported), reported


def test_peek_keeps_the_most_recently_stored_copies(monkeypatch: Any) -> None:
    """Past its size, peek's memo lets go of the least recently stored copy, not of all of them."""
    from kubeling.storage import watchcache
    from kubeling.storage.watchcache import Change, WatchCache

    monkeypatch.setattr(watchcache, "_PEEK_ENTRIES", 3)
    cache = WatchCache()
    objs = {}
    for i in range(4):
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "resourceVersion": str(i + 1)}}
        cache.apply([Change("ADDED", f"/registry/pods/ns/p{i}", i + 1, encode(obj))])
        cache.remember(f"/registry/pods/ns/p{i}", i + 1, obj)
        objs[i] = obj
        if i == 1:
            assert cache.peek("/registry/pods/ns/p0") is objs[0]  # p0 is not the oldest stored any more
            cache.remember("/registry/pods/ns/p0", 1, objs[0])
    for i in (0, 2, 3):
        assert cache.peek(f"/registry/pods/ns/p{i}") is objs[i]
    decoded = cache.peek("/registry/pods/ns/p1")  # the least recently stored went: decoded again
    assert decoded is not objs[1] and decoded == objs[1]
