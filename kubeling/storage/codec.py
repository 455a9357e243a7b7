"""The stored form of an object, shared by every backend and the watch cache.

A backend stores the JSON bytes without ``metadata.resourceVersion``: the revision of the write
is the resourceVersion, so it is stamped back on the way out. Keeping both directions here keeps
the backends byte-compatible (the same object is the same bytes in SQLite and in etcd).
"""

from __future__ import annotations

import orjson

from kubeling.storage.interface import Obj


def encode(obj: Obj) -> bytes:
    """The stored bytes: the object without metadata.resourceVersion (the write's revision is that)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        obj = {**obj, "metadata": meta}
    return orjson.dumps(obj)


def materialize(data: bytes, revision: int) -> Obj:
    """A fresh dict from stored bytes, stamped with its resourceVersion."""
    obj = orjson.loads(data)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    meta["resourceVersion"] = str(revision)
    return obj
