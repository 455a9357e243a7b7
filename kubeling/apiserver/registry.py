"""The generic REST storage: the verbs of every resource, over a kind-agnostic Store.

This is upstream's genericregistry.Store in Python: it derives keys, fills the
object metadata the server owns (uid, creationTimestamp, generateName), runs the
kind's strategy (prepare, validate), admission, and turns storage errors into
API errors. Patches and status writes go through ``guaranteed_update`` which
re-reads and retries on a conflict, as upstream's GuaranteedUpdate does.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubeling.api import errors
from kubeling.api.catalogue import Resource
from kubeling.storage import interface as st
from kubeling.storage.codec import materialize, stamped_json

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# generateName suffixes use upstream's alphabet (no vowels, no confusable digits)
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


_now_cache: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """The current second in RFC 3339; formatted once per second (every create stamps one)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now_cache[1]


_PAIRS = [a + b for a in _ALPHANUMS for b in _ALPHANUMS]  # every two-letter string of the alphabet


def random_suffix(n: int = 5) -> str:
    # upstream's utilrand.String is math/rand too: names need to be unlikely to collide, not secret
    if n != 5:
        return "".join(random.choices(_ALPHANUMS, k=n))
    # the default length from one random draw: two pairs and a letter (every create names a volume)
    pairs, rnd = len(_PAIRS), random.randrange(len(_PAIRS) ** 2 * len(_ALPHANUMS))
    rnd, a = divmod(rnd, pairs)
    c, b = divmod(rnd, pairs)
    return _PAIRS[a] + _PAIRS[b] + _ALPHANUMS[c]


_uid_pool = b""
_uid_next = 0


def _reset_uid_pool() -> None:
    global _uid_pool, _uid_next
    _uid_pool, _uid_next = b"", 0


os.register_at_fork(after_in_child=_reset_uid_pool)  # a forked child must not repeat our UIDs


def new_uid() -> str:
    """A random (version 4) UUID, like uuid.uuid4() but from a pooled urandom read (one syscall per 256)."""
    global _uid_pool, _uid_next
    if _uid_next >= len(_uid_pool):
        _uid_pool, _uid_next = os.urandom(16 * 256), 0
    raw = bytearray(_uid_pool[_uid_next:_uid_next + 16])
    _uid_next += 16
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def deep_copy(obj: Obj) -> Obj:
    return orjson.loads(orjson.dumps(obj))


Converter = Callable[[Resource, Obj], Obj]


def _same_version(_resource: Resource, obj: Obj) -> Obj:
    return obj


def _never(_resource: Resource) -> bool:
    return False


@dataclass(slots=True)
class ListOptions:
    label_selector: Any = None  # a parsed selector with .matches(labels) or None
    field_selector: Any = None  # a parsed selector with .matches(fields) or None
    limit: int = 0
    continue_token: str | None = None
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    preconditions: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


def encode_continue(revision: int, key: str) -> str:
    body = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key + "\x00"})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        body = orjson.loads(base64.urlsafe_b64decode(token + pad))
        if body.get("v") != "meta.k8s.io/v1":
            raise ValueError
        start = body["start"]
        return int(body["rv"]), start[:-1] if start.endswith("\x00") else start
    except Exception as exc:  # noqa: BLE001 - any malformed token is a client error
        raise errors.bad_request("continue key is not valid: invalid continue token") from exc


class Registry:
    """Verbs over the store for every catalogue resource."""

    def __init__(self, store: st.Store, *, admission: Any, strategies: Any, schema: Any,
                 defaults: Any, selectors: Any) -> None:
        self.store = store
        self.admission = admission
        self.strategies = strategies
        self.schema = schema
        self.defaults = defaults
        self.selectors = selectors
        # hooks run after a successful write, e.g. to finish a deletion whose finalizers are gone
        self.after_write: list[Callable[[str, Resource, Obj], Awaitable[None]]] = []
        # serves a stored object through the requested version (custom resources stored in another
        # one); applied wherever an object leaves the registry, and to what a mutation function sees
        self.convert: Converter = _same_version
        self.may_convert: Callable[[Resource], bool] = _never  # can convert() rewrite this resource's objects?

    # ---- keys -------------------------------------------------------------------------------
    @staticmethod
    def prefix(resource: Resource, namespace: str | None) -> str:
        base = resource.storage_prefix
        if resource.namespaced and namespace:
            return f"{base}/{namespace}/"
        return f"{base}/"

    @staticmethod
    def key(resource: Resource, namespace: str | None, name: str) -> str:
        base = resource.storage_prefix
        if resource.namespaced:
            return f"{base}/{namespace}/{name}"
        return f"{base}/{name}"

    # ---- reads ------------------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        obj = await self.store.get(self.key(resource, namespace, name))
        if obj is None:
            raise errors.not_found_error(resource.group, resource.plural, name)
        return self.convert(resource, obj)

    async def get_json(self, resource: Resource, namespace: str | None, name: str) -> bytes | None:
        """``get`` as JSON (orjson's, without Go's escapes) made from the stored bytes; None when the
        store cannot hand them or version conversion may rewrite the object: call ``get``."""
        get_raw = getattr(self.store, "get_raw", None)
        if get_raw is None or self.may_convert(resource):
            return None
        hit = await get_raw(self.key(resource, namespace, name))
        if hit is None:
            raise errors.not_found_error(resource.group, resource.plural, name)
        return stamped_json(hit[1], hit[0])

    async def list(self, resource: Resource, namespace: str | None, opts: ListOptions) -> Obj:
        items, meta = await self._list(resource, namespace, opts, raw=False)
        return {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta,
                "items": items}

    async def list_json(self, resource: Resource, namespace: str | None, opts: ListOptions) -> bytes | None:
        """``list`` as JSON (orjson's, without Go's escapes) made from the stored bytes, never
        decoded; None when the objects must be read (selectors, version conversion): call ``list``."""
        if opts.label_selector is not None or opts.field_selector is not None or self.may_convert(resource):
            return None
        pairs, meta = await self._list(resource, namespace, opts, raw=True)
        return b"".join((b'{"kind":', orjson.dumps(resource.list_kind), b',"apiVersion":',
                         orjson.dumps(resource.api_version), b',"metadata":', orjson.dumps(meta), b',"items":[',
                         b",".join([stamped_json(data, rev) for rev, data in pairs]), b"]}"))

    async def _list(self, resource: Resource, namespace: str | None, opts: ListOptions, *,
                    raw: bool) -> tuple[list[Any], Obj]:
        """The items (objects, or (revision, stored bytes) when ``raw``: no selector then) and the
        list's metadata, page by page from the store."""
        prefix = self.prefix(resource, namespace)
        revision = 0
        start_after: str | None = None
        if opts.continue_token:
            revision, start_after = decode_continue(opts.continue_token)
        elif opts.resource_version not in ("", "0") and opts.resource_version_match == "Exact":
            revision = self._parse_rv(opts.resource_version)
        items: list[Any] = []
        convert = self.convert
        continue_key: str | None = None
        remaining = 0
        try:
            while True:
                want = opts.limit - len(items) if opts.limit else 0
                page = await self.store.list(prefix, limit=want, start_after=start_after, revision=revision, raw=raw)
                revision = page.revision
                if raw:
                    items.extend(page.raw or ())
                else:
                    for obj in page.items:
                        if self._matches(resource, obj, opts):
                            items.append(convert(resource, obj))
                if not page.continue_key:
                    continue_key = None
                    break
                start_after = page.continue_key
                if opts.limit and len(items) >= opts.limit:
                    continue_key = page.continue_key
                    remaining = page.remaining
                    break
        except st.Compacted as exc:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter, or use the continue token "
                "in this response to retrieve the remainder of the results.") from exc
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if continue_key:
            meta["continue"] = encode_continue(revision, continue_key)
            if remaining and opts.label_selector is None and opts.field_selector is None:
                meta["remainingItemCount"] = remaining
        return items, meta

    def _matches(self, resource: Resource, obj: Obj, opts: ListOptions) -> bool:
        if opts.label_selector is not None and not opts.label_selector.matches(
                obj.get("metadata", {}).get("labels") or {}):
            return False
        return opts.field_selector is None or opts.field_selector.matches(
            self.selectors.field_set(resource, obj))

    @staticmethod
    def _parse_rv(rv: str) -> int:
        try:
            value = int(rv)
            if value < 0:
                raise ValueError
            return value
        except ValueError as exc:
            raise errors.bad_request(f'invalid resource version: "{rv}"') from exc

    # ---- create -----------------------------------------------------------------------------
    def _check_identity(self, resource: Resource, obj: Obj, namespace: str | None) -> Obj:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != resource.kind or api_version and api_version != resource.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version})" if api_version != resource.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        if resource.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace or body_ns
        else:
            meta.pop("namespace", None)
        return meta

    def _validate_schema(self, resource: Resource, obj: Obj, field_validation: str) -> list[str]:
        errs, warnings = self.schema.validate(resource, obj, field_validation=field_validation)
        if errs:
            # decode and strict-decoding errors are 400s upstream, never 422s
            raise self.schema.decode_error(resource, errs)
        return list(warnings)

    async def create(self, resource: Resource, namespace: str | None, obj: Obj, *,
                     field_validation: str = "Strict", dry_run: bool = False,
                     user: dict[str, Any] | None = None) -> tuple[Obj, list[str]]:
        meta = self._check_identity(resource, obj, namespace)
        warnings = self._validate_schema(resource, obj, field_validation)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise errors.invalid_error(resource.group, resource.kind, "", [
                    errors.required("metadata.name", "name or generateName is required")])
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(server_owned, None)
        self.defaults.apply_defaults(resource, obj)
        strategy = self.strategies.strategy_for(resource)
        strategy.prepare_for_create(obj)
        await self.admission.admit_create(resource, obj, user=user)
        errs = strategy.validate(obj)
        if errs:
            raise errors.invalid_error(resource.group, resource.kind, meta.get("name", ""), errs)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        if hasattr(strategy, "canonicalize"):
            strategy.canonicalize(obj)
        if dry_run:
            meta["resourceVersion"] = ""
            return self.convert(resource, obj), warnings
        key = self.key(resource, meta.get("namespace"), meta["name"])
        try:
            created = await self.store.create(key, obj)
        except st.KeyExists as exc:
            raise errors.already_exists(resource.group, resource.plural, meta["name"]) from exc
        await self._after_write("create", resource, created)
        return self.convert(resource, created), warnings

    # ---- update -----------------------------------------------------------------------------
    async def update(self, resource: Resource, namespace: str | None, name: str, obj: Obj, *,
                     subresource: str | None = None, field_validation: str = "Strict",
                     dry_run: bool = False, user: dict[str, Any] | None = None) -> tuple[Obj, list[str]]:
        """PUT: replace the object (or its status) with optimistic concurrency."""
        meta = self._check_identity(resource, obj, namespace)
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        warnings = self._validate_schema(resource, obj, field_validation)
        rv = meta.get("resourceVersion") or ""
        key = self.key(resource, namespace, name)
        old = await self._read_shared(key)
        if old is None:
            raise errors.not_found_error(resource.group, resource.plural, name)
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name, errors.OBJECT_MODIFIED)
        updated = await self._write_update(resource, key, old, obj, subresource=subresource,
                                           dry_run=dry_run, user=user)
        return self.convert(resource, updated), warnings

    async def _write_update(self, resource: Resource, key: str, old: Obj, new: Obj, *,
                            subresource: str | None, dry_run: bool,
                            user: dict[str, Any] | None, trusted: bool = False) -> Obj:
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        # fields the client may not change
        for owned in ("uid", "creationTimestamp", "namespace", "deletionTimestamp",
                      "deletionGracePeriodSeconds"):
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        meta["name"] = old_meta["name"]
        meta.pop("selfLink", None)
        if trusted:
            strategy = None  # the server's own change to a stored object (a binding): written as it is
        elif subresource == "finalize":
            # only spec.finalizers may change through namespaces/finalize
            finalizers = (new.get("spec") or {}).get("finalizers") or []
            new = deep_copy(old)
            new.setdefault("spec", {})["finalizers"] = finalizers
            meta = new["metadata"]
            strategy = self.strategies.strategy_for(resource, "status")
            strategy.prepare_for_update(new, old)
            # a new spec, not an assignment into it: the strategy may have shared old's spec
            new["spec"] = {**(new.get("spec") or {}), "finalizers": finalizers}
        else:
            self.defaults.apply_defaults(resource, new)
            strategy = self.strategies.strategy_for(resource, subresource)
            strategy.prepare_for_update(new, old)
        if strategy is not None:
            if subresource is None:
                await self.admission.admit_update(resource, new, old, user=user)
            errs = strategy.validate_update(new, old)
            if errs:
                raise errors.invalid_error(resource.group, resource.kind, old_meta["name"], errs)
            if hasattr(strategy, "canonicalize"):
                strategy.canonicalize(new)
        if dry_run:
            return new
        if _same(new, old):
            return old  # no-op updates do not bump the resourceVersion, as upstream
        # a deletion whose last finalizer was just removed completes now
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (meta.get(
                "deletionGracePeriodSeconds") or 0) > 0 and not _namespace_finalizers(resource, new):
            try:
                deleted = await self.store.delete(key, expected_revision=int(old_meta["resourceVersion"]))
            except st.Conflict as exc:
                raise _StorageConflict(resource.group, resource.plural, old_meta["name"]) from exc
            except st.NotFound as exc:
                raise errors.not_found_error(resource.group, resource.plural, old_meta["name"]) from exc
            await self._after_write("delete", resource, deleted)
            return deleted
        try:
            updated = await self.store.update(key, new, expected_revision=int(old_meta["resourceVersion"]))
        except st.Conflict as exc:
            raise _StorageConflict(resource.group, resource.plural, old_meta["name"]) from exc
        except st.NotFound as exc:
            raise errors.not_found_error(resource.group, resource.plural, old_meta["name"]) from exc
        await self._after_write("update", resource, updated)
        return updated

    async def guaranteed_update(self, resource: Resource, namespace: str | None, name: str,
                                mutate: Callable[[Obj], Obj], *, subresource: str | None = None,
                                dry_run: bool = False, user: dict[str, Any] | None = None,
                                field_validation: str = "Strict",
                                precondition_rv: str | None = None,
                                trusted: bool = False, copy_on_write: bool = False) -> tuple[Obj, list[str]]:
        """Read, mutate a copy, write; on a storage conflict re-read and retry (patch semantics).

        ``trusted``: ``mutate`` is the server's own well-formed change to the stored object (as
        upstream's binding, a GuaranteedUpdate straight on storage): no schema walk, defaulting,
        strategy or validation, which the stored object passed when it was written.
        ``copy_on_write``: ``mutate`` gets the shared old object itself and returns a new one built
        of shallow copies along what it changes (a new metadata dict among them), never writing into
        its argument: no private decode of the stored object (~50-75k instructions for a pod).
        """
        key = self.key(resource, namespace, name)
        for _attempt in range(20):
            if copy_on_write:
                old = await self._read_current(key)
                work = old
            else:
                old, work = await self._read_twice(key)
            if old is None or work is None:
                raise errors.not_found_error(resource.group, resource.plural, name)
            new = mutate(self.convert(resource, work))
            if not isinstance(new, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            if not isinstance(new.get("metadata", {}), dict):
                raise errors.bad_request("metadata must be an object")
            new_rv = (new.get("metadata") or {}).get("resourceVersion")
            # a mutation that sets a different resourceVersion (a patch naming one) is a precondition
            pinned = precondition_rv is not None or bool(new_rv and new_rv != old["metadata"]["resourceVersion"])
            if pinned:
                # a patch that names a resourceVersion is a precondition, as upstream
                wanted = precondition_rv or new_rv
                if wanted != old["metadata"]["resourceVersion"]:
                    raise errors.conflict(resource.group, resource.plural, name, errors.OBJECT_MODIFIED)
            self._check_identity(resource, new, namespace)
            warnings = [] if trusted else self._validate_schema(resource, new, field_validation)
            try:
                written = await self._write_update(resource, key, old, new, subresource=subresource,
                                                   dry_run=dry_run, user=user, trusted=trusted)
            except _StorageConflict:
                if not pinned:
                    continue  # someone wrote in between: re-read and re-apply the mutation
                raise
            return self.convert(resource, written), warnings
        raise errors.conflict(resource.group, resource.plural, name, errors.OBJECT_MODIFIED)

    async def _read_twice(self, key: str) -> tuple[Obj | None, Obj | None]:
        """The live object at key twice: the old state (shared, read-only: see _read_shared) and a
        private copy to mutate (decoding the stored bytes is cheaper than a deep copy)."""
        if getattr(self.store, "get_raw", None) is None:
            old = await self.store.get(key)
            return old, deep_copy(old) if old is not None else None
        hit, old = await self._read_current_raw(key)
        return old, materialize(hit[1], hit[0]) if hit is not None else None

    async def _read_current(self, key: str) -> Obj | None:
        """The live object at key, read-only: the store's shared copy of that very revision where it
        has one (one decode otherwise)."""
        if getattr(self.store, "get_raw", None) is None:
            return await self.store.get(key)
        return (await self._read_current_raw(key))[1]

    async def _read_current_raw(self, key: str) -> tuple[tuple[int, bytes] | None, Obj | None]:
        """(revision, stored bytes) and the shared decoded object of that revision (decoded here
        when the store has no shared copy of it), or (None, None)."""
        hit = await self.store.get_raw(key)  # type: ignore[attr-defined]
        if hit is None:
            return None, None
        peek = getattr(self.store, "peek", None)
        old = peek(key) if peek is not None else None
        if old is None or old["metadata"]["resourceVersion"] != str(hit[0]):
            old = materialize(hit[1], hit[0])  # no shared copy of this very revision
        return hit, old

    async def _read_shared(self, key: str) -> Obj | None:
        """The live object at key as the old state of an update: the store's shared decoded copy
        (SqliteStore.peek) where it has one. The update path only reads it; new objects may share
        its nested values but nothing writes into them (strategies share, never mutate; see
        api/strategies._shared). With KUBELING_VERIFY_SHARED=1 (the test suite) the watch cache
        checks every shared copy it hands out against the stored bytes."""
        peek = getattr(self.store, "peek", None)
        return peek(key) if peek is not None else await self.store.get(key)

    # ---- delete -----------------------------------------------------------------------------
    async def delete(self, resource: Resource, namespace: str | None, name: str,
                     opts: DeleteOptions) -> tuple[Obj, bool]:
        """Delete with graceful deletion and finalizers. Returns (object, deleted_now)."""
        obj, deleted_now = await self._delete(resource, namespace, name, opts)
        try:
            return self.convert(resource, obj), deleted_now
        except errors.StatusError:
            return obj, deleted_now  # the deletion happened: answer with the stored version

    async def _delete(self, resource: Resource, namespace: str | None, name: str,
                      opts: DeleteOptions) -> tuple[Obj, bool]:
        key = self.key(resource, namespace, name)
        for _attempt in range(20):
            obj = await self._read_current(key)  # shared, only read: the answer when nothing changes
            if obj is None:
                raise errors.not_found_error(resource.group, resource.plural, name)
            # what deletion changes is metadata (and a namespace's status.phase): new copies of those,
            # the rest shared with obj, instead of a private decode of the whole object
            new = {**obj, "metadata": dict(obj["metadata"])}
            if _namespace_finalizers(resource, obj):
                new["status"] = dict(obj.get("status") or {})
            meta = obj["metadata"]
            pre = opts.preconditions or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(resource.group, resource.plural, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(resource.group, resource.plural, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{meta.get('resourceVersion')}")
            await self.admission.admit_delete(resource, obj)
            strategy = self.strategies.strategy_for(resource)
            changed = self._prepare_deletion(resource, strategy, new, opts)
            nmeta = new["metadata"]
            pending = bool(nmeta.get("finalizers")) or (nmeta.get("deletionGracePeriodSeconds") or 0) > 0 \
                or _namespace_finalizers(resource, new)
            if opts.dry_run:
                return new, not pending
            rv = int(meta["resourceVersion"])
            try:
                if pending:
                    if not changed:
                        return obj, False
                    updated = await self.store.update(key, new, expected_revision=rv)
                    await self._after_write("update", resource, updated)
                    return updated, False
                deleted = await self.store.delete(key, expected_revision=rv)
            except st.Conflict:
                continue
            except st.NotFound as exc:
                raise errors.not_found_error(resource.group, resource.plural, name) from exc
            await self._after_write("delete", resource, deleted)
            return deleted, True
        raise errors.conflict(resource.group, resource.plural, name, errors.OBJECT_MODIFIED)

    def _prepare_deletion(self, resource: Resource, strategy: Any, obj: Obj, opts: DeleteOptions) -> bool:
        """Set deletionTimestamp, grace period and GC finalizers; True if anything changed."""
        meta = obj["metadata"]
        changed = False
        finalizers = list(meta.get("finalizers") or [])
        policy = opts.propagation_policy
        if policy is None and opts.orphan_dependents is not None:
            policy = "Orphan" if opts.orphan_dependents else "Background"
        if policy is None and "orphan" in finalizers:
            policy = "Orphan"
        if policy is None:
            policy = getattr(strategy, "default_propagation", "Background")
        if not meta.get("deletionTimestamp"):
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        if finalizers != list(meta.get("finalizers") or []):
            meta["finalizers"] = finalizers
            changed = True
        grace = 0
        grace_fn = getattr(strategy, "deletion_grace_period", None)
        if grace_fn is not None:
            grace = grace_fn(obj, opts.grace_period_seconds)
        elif resource.group == "" and resource.plural == "pods":
            grace = pod_deletion_grace_period(obj, opts.grace_period_seconds)
        if grace > 0:
            current = meta.get("deletionGracePeriodSeconds")
            if current is None or grace < current:
                when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
                meta["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                meta["deletionGracePeriodSeconds"] = grace
                changed = True
        else:
            if meta.get("deletionGracePeriodSeconds"):
                meta["deletionGracePeriodSeconds"] = 0
                changed = True
            if not meta.get("deletionTimestamp") and (finalizers or _namespace_finalizers(resource, obj)):
                meta["deletionTimestamp"] = now_rfc3339()
                meta["deletionGracePeriodSeconds"] = 0
                changed = True
        if _namespace_finalizers(resource, obj) and obj.get("status", {}).get("phase") != "Terminating":
            obj.setdefault("status", {})["phase"] = "Terminating"
            changed = True
        return changed

    # ---- watch ------------------------------------------------------------------------------
    async def watch(self, resource: Resource, namespace: str | None, name: str | None,
                    opts: ListOptions, *, send_initial_events: bool) -> AsyncIterator[tuple[str, Obj | st.Event]]:
        """Yield (type, object) watch events, filtered by selectors as upstream does.

        An object that starts matching a selector arrives as ADDED, one that stops matching as
        DELETED. Initial events (for resourceVersion "" / "0" or sendInitialEvents) come first;
        with sendInitialEvents an ("INITIAL_END", {"revision": rv}) marker ends them. A change from
        the store comes as the store's shared, read-only ``Event`` (its ``json()`` needs no
        decoding) unless the resource's version conversion has to rewrite it.
        """
        events = self._watch(resource, namespace, name, opts, send_initial_events=send_initial_events)
        converts = self.may_convert(resource)
        try:
            async for kind, obj in events:
                if kind == "INITIAL_END":
                    yield kind, obj
                elif isinstance(obj, st.Event):
                    yield kind, (self.convert(resource, obj.object) if converts else obj)
                else:
                    yield kind, self.convert(resource, obj)
        finally:
            await events.aclose()

    async def _watch(self, resource: Resource, namespace: str | None, name: str | None,
                     opts: ListOptions, *, send_initial_events: bool) -> AsyncIterator[tuple[str, Obj | st.Event]]:
        prefix = self.key(resource, namespace, name) if name else self.prefix(resource, namespace)
        if opts.resource_version in ("", "0") or send_initial_events:
            snapshot = await self.store.list(prefix, revision=0)
            start = snapshot.revision
            if opts.resource_version not in ("", "0"):
                start = self._parse_rv(opts.resource_version)
                snapshot = await self.store.list(prefix, revision=0)
                start = snapshot.revision
            for obj in snapshot.items:
                if name and obj["metadata"].get("name") != name:
                    continue
                if self._matches(resource, obj, opts):
                    yield "ADDED", obj
            if send_initial_events:
                yield "INITIAL_END", {"revision": start}
        else:
            start = self._parse_rv(opts.resource_version)
        selects = opts.label_selector is not None or opts.field_selector is not None
        try:
            async for ev in self.store.watch(prefix, revision=start):
                if name and ev.key != prefix:
                    continue
                if not selects:  # everything matches: the event's objects need not be decoded
                    yield ev.type, ev
                    continue
                now_match = self._matches(resource, ev.object, opts)
                if ev.type == "ADDED":
                    if now_match:
                        yield "ADDED", ev
                elif ev.type == "DELETED":
                    before = ev.prev_object if ev.prev_object is not None else ev.object
                    if self._matches(resource, before, opts):
                        yield "DELETED", ev
                else:
                    was = ev.prev_object is None or self._matches(resource, ev.prev_object, opts)
                    if now_match and was:
                        yield "MODIFIED", ev
                    elif now_match:
                        yield "ADDED", ev
                    elif was:
                        yield "DELETED", ev
        except st.Compacted as exc:
            raise errors.gone(f"too old resource version: {exc.requested} ({exc.oldest})") from exc

    async def _after_write(self, verb: str, resource: Resource, obj: Obj) -> None:
        for hook in self.after_write:
            try:
                await hook(verb, resource, obj)
            except Exception:  # noqa: BLE001 - a hook must not fail the acknowledged write
                log.exception("after-write hook failed")


class _StorageConflict(errors.StatusError):
    """The 409 of a lost compare-and-swap: guaranteed_update retries it, clients see a Conflict."""

    def __init__(self, group: str, plural: str, name: str) -> None:
        err = errors.conflict(group, plural, name, errors.OBJECT_MODIFIED)
        super().__init__(err.code, err.reason, err.message, details=err.details)


def pod_deletion_grace_period(pod: Obj, requested: int | None) -> int:
    """Upstream's pod CheckGracefulDelete: unscheduled or finished pods go at once."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Failed", "Succeeded"):
        return 0
    if requested is not None:
        return max(0, requested)
    grace = spec.get("terminationGracePeriodSeconds")
    return 30 if grace is None else max(0, int(grace))


def _namespace_finalizers(resource: Resource, obj: Obj) -> bool:
    """Namespaces wait for spec.finalizers (the namespace controller's) as well as metadata.finalizers."""
    return resource.group == "" and resource.plural == "namespaces" and bool(
        (obj.get("spec") or {}).get("finalizers"))


def _same(a: Obj, b: Obj) -> bool:
    """Equal but for metadata.resourceVersion (a no-op write), compared in place without copies."""
    return _equal_except(a.get("metadata", {}), b.get("metadata", {}), "resourceVersion") and \
        _equal_except(a, b, "metadata")


def _equal_except(a: Obj, b: Obj, skip: str) -> bool:
    """``a == b`` as if neither had the key ``skip``."""
    if len(a) - (skip in a) != len(b) - (skip in b):
        return False
    missing = _MISSING
    for k, v in a.items():  # noqa: SIM110 - a plain loop: no generator per call on the write path
        if k != skip and v != b.get(k, missing):
            return False
    return True


_MISSING = object()
