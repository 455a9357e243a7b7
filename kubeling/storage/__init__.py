"""Versioned key-value storage with watch, and the factory that picks a backend from a URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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
    file; ``sqlite://rel.db``: relative to data_dir.

    ``etcd://HOST:PORT[,HOST:PORT...]``: an etcd v3 cluster (fail-over across the members).
    Client TLS with query parameters: ``?cacert=/ca.crt&cert=/client.crt&key=/client.key``
    (any of them; ``etcds://`` turns TLS on with the system's roots when none is given).
    Relative file paths are relative to data_dir.

    ``KUBELING_WATCH_WINDOW`` (hidden, for tests): how many recent changes the SQLite store keeps
    for watches to replay (default 10,000); a small window makes 410 Expired easy to provoke.
    """
    url = url.strip()
    window = _watch_window()
    if url in ("", "sqlite://", "sqlite:"):
        return SqliteStore(Path(data_dir) / "state.db", window=window)
    if url.startswith("sqlite://"):
        # an absolute path wins
        return SqliteStore(Path(data_dir) / url.removeprefix("sqlite://"), window=window)
    if url.startswith(("etcd://", "etcds://")):
        return _open_etcd(url, Path(data_dir))
    raise ValueError(f"unsupported storage URL {url!r}: expected sqlite://, sqlite:///path/to/state.db or etcd://HOST:PORT[,HOST:PORT...]")


def _watch_window(default: int = 10_000) -> int:
    raw = os.environ.get("KUBELING_WATCH_WINDOW", "").strip()
    if not raw:
        return default
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"KUBELING_WATCH_WINDOW must be a positive integer, not {raw!r}") from None


def _open_etcd(url: str, data_dir: Path) -> Store:
    from kubeling.storage.etcd import EtcdStore, TLSConfig  # grpc is only imported when used

    parts = urlsplit(url)
    endpoints = [e.strip() for e in parts.netloc.split(",") if e.strip()]
    if not endpoints or parts.path not in ("", "/"):
        raise ValueError(f"bad etcd storage URL {url!r}: expected etcd://HOST:PORT[,HOST:PORT...][?cacert=&cert=&key=]")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"cacert", "cert", "key"}
    if unknown:
        raise ValueError(f"bad etcd storage URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    files = {k: data_dir / v for k, v in query.items()}  # an absolute path wins
    tls = None
    if files or parts.scheme == "etcds":
        tls = TLSConfig(cacert=files.get("cacert"), cert=files.get("cert"), key=files.get("key"))
    for e in endpoints:
        if ":" not in e:
            raise ValueError(f"bad etcd endpoint {e!r} in {url!r}: expected HOST:PORT")
    return EtcdStore(endpoints, tls=tls)
