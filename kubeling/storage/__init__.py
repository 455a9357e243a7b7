"""Versioned key-value storage with watch, and the factory that picks a backend from a URL."""

from __future__ import annotations

from pathlib import Path

from kubeling.storage.interface import (
    Compacted,
    Conflict,
    Event,
    KeyExists,
    ListResult,
    NotFound,
    Obj,
    StorageError,
    Store,
)
from kubeling.storage.sqlite import SqliteStore

__all__ = [
    "Compacted",
    "Conflict",
    "Event",
    "KeyExists",
    "ListResult",
    "NotFound",
    "Obj",
    "SqliteStore",
    "StorageError",
    "Store",
    "open_store",
]


def open_store(url: str, data_dir: Path) -> Store:
    """A store (not yet started: ``await store.start()``) for a storage URL.

    ``""`` or ``sqlite://``: ``<data_dir>/state.db``; ``sqlite:///abs/path.db``: that
    file; ``sqlite://rel.db``: relative to data_dir. ``etcd://...`` is not there yet.
    """
    url = url.strip()
    if url in ("", "sqlite://", "sqlite:"):
        return SqliteStore(Path(data_dir) / "state.db")
    if url.startswith("sqlite://"):
        return SqliteStore(Path(data_dir) / url.removeprefix("sqlite://"))  # an absolute path wins
    if url.startswith(("etcd://", "etcds://", "http://", "https://")):
        raise NotImplementedError(
            f"the etcd storage backend is not implemented yet (storage URL {url!r}); use sqlite://"
        )
    raise ValueError(f"unsupported storage URL {url!r}: expected sqlite:// or sqlite:///path/to/state.db")
