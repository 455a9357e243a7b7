"""Turn a request path into upstream's RequestInfo: group, version, namespace, resource, name, subresource.

The rules follow k8s.io/apiserver/pkg/endpoints/request/requestinfo.go: under
``/api/v1`` and ``/apis/<group>/<version>``, ``namespaces/<ns>/<resource>...``
scopes a resource to a namespace, except ``namespaces/<ns>/status`` and
``namespaces/<ns>/finalize``, which are subresources of the namespace itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_Fields = tuple[Any, ...] | None  # a RequestInfo's fields in order; None: not a resource path
_MISS = object()
_CACHE_LIMIT = 4096
# path -> its fields: every request parses its path, and clients send the same few over and over
_cache: dict[str, _Fields] = {}


@dataclass(slots=True)
class RequestInfo:
    group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    legacy_watch: bool = False  # /api/v1/watch/... paths


def parse_resource_path(path: str) -> RequestInfo | None:
    """None when the path is not a resource path (discovery, health, ...).

    A new RequestInfo each call: a handler may change its copy (a namespace create drops the namespace).
    """
    fields = _cache.get(path, _MISS)
    if fields is _MISS:
        fields = _remember(path, _fields(path))
    return None if fields is None else RequestInfo(*fields)


def _remember(path: str, fields: _Fields) -> _Fields:
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()  # paths naming objects come and go: start over rather than grow
    _cache[path] = fields
    return fields


def _fields(path: str) -> _Fields:
    """The path's fields, from its parent's when that is a collection (``.../pods`` names ``.../pods/x``
    as one more segment: the parent is parsed once, each object's path costs a look-up)."""
    parent, _, last = path.rpartition("/")
    if last:
        up = _cache.get(parent, _MISS)
        if up is _MISS:
            up = _remember(parent, _parse(parent))
        if up is not None and up[4] is None and up[5] is None:
            return (*up[:4], last, None, up[6])
    return _parse(path)


def _parse(path: str) -> _Fields:
    info = _parse_info(path)
    return None if info is None else (info.group, info.version, info.resource, info.namespace, info.name,
                                      info.subresource, info.legacy_watch)


def _parse_info(path: str) -> RequestInfo | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = False
    if rest and rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
        if not rest:
            return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
        else:
            # the namespace object itself: namespaces/<name>[/status|/finalize]
            info = RequestInfo(group, version, "namespaces", None, rest[1],
                               rest[2] if len(rest) > 2 else None, legacy_watch)
            return info if len(rest) <= 3 else None
    if len(rest) > 3:
        return None
    return RequestInfo(group, version, rest[0], namespace,
                       rest[1] if len(rest) > 1 else None,
                       rest[2] if len(rest) > 2 else None, legacy_watch)
