"""The stored form of an object, shared by every backend and the watch cache.

A backend stores the JSON bytes without ``metadata.resourceVersion``: the revision of the write
is the resourceVersion, so it is stamped back on the way out. Keeping both directions here keeps
the backends byte-compatible (the same object is the same bytes in SQLite and in etcd).

The stored bytes begin ``{"apiVersion":…,"kind":…,"metadata":{`` (``encode`` puts those keys
first), so ``stamped_json`` can insert the resourceVersion into the bytes without decoding them:
a watch frame is made of the stored bytes, not of a decoded and re-encoded object.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

Obj = dict[str, Any]

_HEAD = ("apiVersion", "kind", "metadata")
# The stored object's head up to the inside of metadata. apiVersion and kind are plain strings
# (no quote, no escape); anything else takes the decoding path.
_STAMPABLE = re.compile(rb'\{"apiVersion":"[^"\\]*","kind":"[^"\\]*","metadata":\{')


def encode(obj: Obj) -> bytes:
    """The stored bytes: apiVersion, kind and metadata first, without metadata.resourceVersion (the
    write's revision is that). The caller's dicts are not changed."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "apiVersion" not in obj or "kind" not in obj:
        return orjson.dumps(obj)  # not an API object: stored as it is
    if "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
    elif tuple(obj)[:3] == _HEAD:
        return orjson.dumps(obj)  # the common case: nothing to reorder or strip
    head: Obj = {"apiVersion": None, "kind": None, "metadata": None}
    head.update(obj)  # keys already there keep their place: apiVersion, kind, metadata, then the rest
    head["metadata"] = meta
    return orjson.dumps(head)


def materialize(data: bytes, revision: int) -> Obj:
    """A fresh dict from stored bytes, stamped with its resourceVersion."""
    obj = orjson.loads(data)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    meta["resourceVersion"] = str(revision)
    return obj


def stamped(obj: Obj, revision: int) -> Obj:
    """``obj`` with its resourceVersion, in a new top-level and metadata dict (the nested values are
    shared): what ``materialize(encode(obj), revision)`` gives, without encoding or decoding."""
    meta = obj.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["resourceVersion"] = str(revision)
    return {**obj, "metadata": meta}


def stamped_json(data: bytes, revision: int) -> bytes:
    """The JSON of ``materialize(data, revision)`` (same object; resourceVersion first in metadata),
    spliced into the stored bytes without decoding them when their head allows."""
    m = _STAMPABLE.match(data)
    if m is None:
        return orjson.dumps(materialize(data, revision))
    end = m.end()
    rv = b'"resourceVersion":"%d"' % revision
    if data[end:end + 1] != b"}":
        rv += b","
    return b"".join((data[:end], rv, data[end:]))
