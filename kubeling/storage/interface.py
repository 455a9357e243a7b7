"""The store every backend implements: keys, JSON objects and revisions, never kinds.

Modelled on the apiserver's storage.Interface and on kine: a revision is a
strictly increasing integer shared by the whole store; it is the objects'
resourceVersion. Keys look like upstream's etcd layout:
``/registry/<resource>/<namespace>/<name>`` (cluster-scoped: no namespace part).

Objects travel as dicts. A backend stamps ``metadata.resourceVersion`` (a
string) on every object it returns, and strips it before persisting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from kubeling.storage.codec import Obj, materialize, stamped_json


class StorageError(Exception):
    """Base of the errors a store raises; the API layer maps them to Status."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or key)
        self.key = key


class KeyExists(StorageError):
    """create() of a key that holds a live object (HTTP 409 AlreadyExists)."""


class NotFound(StorageError):
    """get/update/delete of a key that holds no live object (HTTP 404)."""


class Conflict(StorageError):
    """The expected revision is not the key's current one (HTTP 409 Conflict)."""

    def __init__(self, key: str, current: Obj | None = None) -> None:
        super().__init__(key, f"conflict on {key}")
        self.current = current


class Compacted(StorageError):
    """A watch or list asked for a revision older than the store keeps (HTTP 410 Gone)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__("", f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(slots=True)
class ListResult:
    items: list[Obj]  # empty for a raw list
    revision: int  # the store revision the list reflects
    continue_key: str | None = None  # the last key returned, when more remain
    remaining: int = 0  # how many items remain after this page (best effort)
    raw: list[tuple[int, bytes]] | None = None  # a raw list's items: (revision, stored bytes)


class Event:
    """One change a watch reports. ``object`` (for DELETED: the last state, with resourceVersion =
    the deletion revision) and ``prev_object`` (the state before, for MODIFIED/DELETED) are decoded
    from the stored bytes on first use and then kept: a store hands one Event to every watcher, so
    they are shared and read-only. ``json()`` is ``object`` as JSON, made without decoding."""

    __slots__ = ("type", "key", "revision", "data", "prev_data", "prev_revision", "_object", "_prev", "_json")

    def __init__(self, type: Literal["ADDED", "MODIFIED", "DELETED"], key: str, revision: int,  # noqa: A002
                 data: bytes, prev_data: bytes | None = None, prev_revision: int = 0, *,
                 decoded: Obj | None = None) -> None:
        """``decoded``: ``object`` already at hand (the write's own dict, stamped), equal to what
        decoding ``data`` would give; it is then never decoded."""
        self.type = type
        self.key = key
        self.revision = revision
        self.data = data
        self.prev_data = prev_data
        self.prev_revision = prev_revision
        self._object: Obj | None = decoded
        self._prev: Obj | None = None
        self._json: bytes | None = None

    @property
    def object(self) -> Obj:
        if self._object is None:
            self._object = materialize(self.data, self.revision)
        return self._object

    @property
    def prev_object(self) -> Obj | None:
        if self._prev is None and self.prev_data is not None:
            self._prev = materialize(self.prev_data, self.prev_revision)
        return self._prev

    def shared_object_intact(self) -> bool:
        """False if the decoded ``object`` handed out was changed since (a check for the test suite)."""
        return self._object is None or self._object == materialize(self.data, self.revision)

    def json(self) -> bytes:
        if self._json is None:
            self._json = stamped_json(self.data, self.revision)
        return self._json

    def __repr__(self) -> str:
        return f"Event({self.type}, {self.key!r}, revision={self.revision})"


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def current_revision(self) -> int: ...

    async def get(self, key: str) -> Obj | None:
        """The live object at key, or None."""

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int = 0,
        raw: bool = False,
    ) -> ListResult:
        """Live objects whose key starts with prefix, ordered by key.

        ``limit`` 0 means all. ``start_after`` continues a paged list after that key. ``raw``: the
        items as (revision, stored bytes) in ``ListResult.raw``, not decoded (see codec).
        ``revision`` 0 means the latest; otherwise the state as of that revision
        (raises Compacted if it is older than the store keeps).
        """

    async def create(self, key: str, obj: Obj) -> Obj:
        """Store a new object durably; raises KeyExists. Returns it with its resourceVersion."""

    async def update(self, key: str, obj: Obj, *, expected_revision: int) -> Obj:
        """Compare-and-swap: replace the object whose current revision is expected_revision.

        Raises NotFound or Conflict. Durable before it returns.
        """

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Obj:
        """Delete the live object (optionally only at that revision); returns its last state
        stamped with the deletion revision. Raises NotFound or Conflict."""

    def watch(self, prefix: str, *, revision: int) -> AsyncIterator[Event]:
        """Events on keys under prefix with a revision greater than ``revision``, in order,
        forever (until the consumer stops iterating). Raises Compacted (on first iteration)
        if ``revision`` is older than the watch window keeps."""
