"""Turn a request path into upstream's RequestInfo: group, version, namespace, resource, name, subresource.

The rules follow k8s.io/apiserver/pkg/endpoints/request/requestinfo.go: under
``/api/v1`` and ``/apis/<group>/<version>``, ``namespaces/<ns>/<resource>...``
scopes a resource to a namespace, except ``namespaces/<ns>/status`` and
``namespaces/<ns>/finalize``, which are subresources of the namespace itself.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_SUBRESOURCES = {"status", "finalize"}


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
    """None when the path is not a resource path (discovery, health, ...)."""
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
