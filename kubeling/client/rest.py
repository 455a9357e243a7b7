"""The REST client every component uses to talk to the API server over HTTP(S).

One aiohttp session (keep-alive connection pool) per client, JSON through orjson, bearer-token
auth. Resources are named as kubectl names them: ``pods`` (core/v1), ``daemonsets.apps``,
``leases.coordination.k8s.io``; the group's preferred version is assumed unless the name carries
one (``horizontalpodautoscalers.v1.autoscaling``). A namespaced path is built when ``namespace`` is
given, a cluster-scoped (or all-namespaces) path otherwise.

Errors come back as :class:`ApiError` carrying the server's metav1.Status. Retrying on connection
errors is the caller's job (the informer does it with back-off).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson

from kubeling.client.config import ClientConfig

if TYPE_CHECKING:
    from kubeling.apiserver.loopback import Loopback

log = logging.getLogger(__name__)

# Preferred versions of the built-in API groups (kube-apiserver 1.32).
PREFERRED_VERSIONS: dict[str, str] = {
    "": "v1",
    "apps": "v1",
    "coordination.k8s.io": "v1",
    "events.k8s.io": "v1",
    "policy": "v1",
    "batch": "v1",
    "rbac.authorization.k8s.io": "v1",
    "networking.k8s.io": "v1",
    "storage.k8s.io": "v1",
    "scheduling.k8s.io": "v1",
    "autoscaling": "v2",
    "apiextensions.k8s.io": "v1",
    "admissionregistration.k8s.io": "v1",
    "discovery.k8s.io": "v1",
    "node.k8s.io": "v1",
    "certificates.k8s.io": "v1",
    "authentication.k8s.io": "v1",
    "authorization.k8s.io": "v1",
    "flowcontrol.apiserver.k8s.io": "v1",
    "apiregistration.k8s.io": "v1",
}

_VERSION_RE = re.compile(r"^v\d+((alpha|beta)\d+)?$")

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

_DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)


class ApiError(Exception):
    """A non-2xx answer from the API server; ``status`` is the metav1.Status body."""

    def __init__(self, code: int, reason: str = "", message: str = "",
                 status: dict[str, Any] | None = None) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status if status is not None else {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }
        super().__init__(f"{code} {reason}: {message}" if reason else f"{code}: {message}")

    @property
    def details(self) -> dict[str, Any]:
        return self.status.get("details") or {}

    @classmethod
    def from_status(cls, code: int, status: dict[str, Any]) -> ApiError:
        return cls(int(status.get("code") or code), status.get("reason", ""), status.get("message", ""),
                   status)


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 404


def is_conflict(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 409 and e.reason != "AlreadyExists"


def is_already_exists(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 409 and e.reason == "AlreadyExists"


def is_gone(e: BaseException) -> bool:
    """410: the requested resourceVersion is compacted; a watcher must relist."""
    return isinstance(e, ApiError) and e.code == 410


def split_resource(resource: str) -> tuple[str, str, str]:
    """``"daemonsets.apps"`` -> ``("apps", "v1", "daemonsets")``.

    >>> split_resource("pods"), split_resource("hpa.v1.autoscaling")
    (('', 'v1', 'pods'), ('autoscaling', 'v1', 'hpa'))
    """
    plural, _, rest = resource.partition(".")
    if not rest:
        return "", "v1", plural
    head, _, tail = rest.partition(".")
    if _VERSION_RE.match(head):
        return tail, head, plural
    return rest, PREFERRED_VERSIONS.get(rest, "v1"), plural


def resource_path(resource: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    group, version, plural = split_resource(resource)
    parts = ["/api/v1" if not group else f"/apis/{group}/{version}"]
    if group == "" and version != "v1":
        parts = [f"/api/{version}"]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def _query(**params: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        if v is None or v == "" or (k == "limit" and not v):
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


class Client:
    """An async Kubernetes API client over one keep-alive connection pool.

    Create it inside the event loop that uses it (the aiohttp session is created lazily on the
    first request) and ``await close()`` when done.
    """

    def __init__(self, config: ClientConfig, *, component: str = "client", pool_size: int = 100,
                 loopback: Loopback | None = None) -> None:
        self.config = config
        self.user_agent = f"kubeling/{component}"
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._server_index = 0
        self._ssl = config.ssl_context()
        # in the API server's own process: requests skip the wire (see kubeling.apiserver.loopback)
        self._loopback = loopback
        self._loopback_headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if config.token:
            self._loopback_headers["Authorization"] = f"Bearer {config.token}"

    @property
    def server(self) -> str:
        return self.config.servers[self._server_index]

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=60, ssl=self._ssl
                                             if self._ssl is not None else True)
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(connector=connector, headers=headers,
                                                  json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    def failover(self) -> None:
        """Switch to the next configured server."""
        self._server_index = (self._server_index + 1) % len(self.config.servers)

    def _connect_failed(self, server: str) -> None:
        # With several servers, the caller's retry goes to the next one. Only the first of many
        # concurrent requests failing on ``server`` moves on: the others, failing on the same dead
        # server, must not move the index again (with two servers, back to the dead one).
        if len(self.config.servers) > 1 and self.server == server:
            log.info("cannot connect to %s; failing over", server)
            self.failover()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- raw ---------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: aiohttp.ClientTimeout | None = None) -> Any:
        """One request; the decoded JSON answer (or text for non-JSON), ApiError on non-2xx."""
        data: bytes | None = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes | str) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        if self._loopback is not None:
            if isinstance(data, str):
                data = data.encode()
            status, ctype, raw, _ = await self._loopback.request(
                method, path, params=params, headers={**self._loopback_headers, **headers}, body=data,
                timeout=timeout.total if timeout is not None else None)
            return _answer(status, ctype, raw)
        server = self.server
        try:
            async with self._sess().request(method, server + path, params=params, data=data,
                                            headers=headers, timeout=timeout or _DEFAULT_TIMEOUT) as resp:
                raw = await resp.read()
        except aiohttp.ClientConnectorError:
            self._connect_failed(server)
            raise
        return _answer(resp.status, resp.content_type, raw)

    # -- verbs ---------------------------------------------------------------------------------

    async def get(self, resource: str, name: str, namespace: str | None = None, *,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self.request("GET", resource_path(resource, namespace, name, subresource))

    async def list(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int = 0, continue_: str | None = None,
                   resource_version: str | None = None, *,
                   resource_version_match: str | None = None) -> dict[str, Any]:
        params = _query(labelSelector=label_selector, fieldSelector=field_selector, limit=limit,
                        resourceVersion=resource_version, resourceVersionMatch=resource_version_match,
                        **{"continue": continue_})
        return await self.request("GET", resource_path(resource, namespace), params=params)

    async def list_all(self, resource: str, namespace: str | None = None, *, label_selector: str | None = None,
                       field_selector: str | None = None, page_size: int = 500) -> dict[str, Any]:
        """List through every page (as client-go's pager); one List dict with all items.

        Falls back to a single unpaginated list when a continue token expires (410) mid-way.
        """
        first = await self.list(resource, namespace, label_selector, field_selector, limit=page_size)
        items = list(first.get("items") or [])
        cont = (first.get("metadata") or {}).get("continue")
        while cont:
            try:
                page = await self.list(resource, namespace, label_selector, field_selector,
                                       limit=page_size, continue_=cont)
            except ApiError as e:
                if e.code != 410:
                    raise
                return await self.list(resource, namespace, label_selector, field_selector)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
        first["items"] = items
        first.setdefault("metadata", {}).pop("continue", None)
        first["metadata"].pop("remainingItemCount", None)
        return first

    async def create(self, resource: str, obj: dict[str, Any], namespace: str | None = None,
                     name: str | None = None, subresource: str | None = None, *,
                     field_manager: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        if namespace is None:
            namespace = (obj.get("metadata") or {}).get("namespace") if _namespaced_hint(obj) else None
        params = _query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        return await self.request("POST", resource_path(resource, namespace, name, subresource),
                                  params=params, body=obj)

    async def update(self, resource: str, obj: dict[str, Any], namespace: str | None = None,
                     subresource: str | None = None, *, field_manager: str | None = None) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        if namespace is None:
            namespace = meta.get("namespace")
        params = _query(fieldManager=field_manager)
        return await self.request("PUT", resource_path(resource, namespace, meta["name"], subresource),
                                  params=params, body=obj)

    async def patch(self, resource: str, name: str, body: Any, namespace: str | None = None,
                    subresource: str | None = None, patch_type: str = "merge", *,
                    field_manager: str | None = None, force: bool | None = None) -> dict[str, Any]:
        params = _query(fieldManager=field_manager, force=force)
        return await self.request("PATCH", resource_path(resource, namespace, name, subresource),
                                  params=params, body=body, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, resource: str, name: str, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **opts} if opts else None
        return await self.request("DELETE", resource_path(resource, namespace, name), body=body)

    async def delete_collection(self, resource: str, namespace: str | None = None, *,
                                label_selector: str | None = None,
                                field_selector: str | None = None) -> dict[str, Any]:
        params = _query(labelSelector=label_selector, fieldSelector=field_selector)
        return await self.request("DELETE", resource_path(resource, namespace), params=params)

    async def watch(self, resource: str, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None, *,
                    allow_bookmarks: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events ``{"type", "object"}`` until the server ends the watch.

        An ERROR frame is raised as ApiError (410 Gone: the resourceVersion is too old, relist).
        """
        params = _query(watch=True, allowWatchBookmarks=allow_bookmarks or None,
                        resourceVersion=resource_version, labelSelector=label_selector,
                        fieldSelector=field_selector, timeoutSeconds=timeout_seconds)
        # No total deadline: the server ends the watch at timeoutSeconds; a silent connection
        # (no bytes at all, not even bookmarks) for that long plus margin is treated as dead.
        if self._loopback is not None:
            async for event in self._loopback_watch(resource_path(resource, namespace), params):
                yield event
            return
        read = (timeout_seconds or 1800) + 60
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read)
        server = self.server
        try:
            ctx = await self._sess().get(server + resource_path(resource, namespace), params=params,
                                         timeout=timeout)
        except aiohttp.ClientConnectorError:
            self._connect_failed(server)
            raise
        async with ctx as resp:
            if resp.status >= 300:
                raise _error_from(resp.status, await resp.read())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(line)
            if buf.strip():
                yield _watch_event(buf)


    async def _loopback_watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        from kubeling.apiserver.loopback import LoopbackError  # loaded already: the server is in this process

        assert self._loopback is not None
        # events as objects (the server's decoded ones, shared: an informer keeps them read-only), not
        # frames to decode; a stream of bytes still comes for anything but a plain JSON watch
        chunks = self._loopback.stream(path, params=params, headers=self._loopback_headers, objects=True)
        try:
            buf = b""
            async for chunk in chunks:
                if type(chunk) is list:
                    for event in chunk:
                        if event["type"] == "ERROR":
                            status = event.get("object") or {}
                            raise ApiError.from_status(int(status.get("code") or 500), status)
                        yield event
                    continue
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line:
                        yield _watch_event(line)
            if buf.strip():
                yield _watch_event(buf)
        except LoopbackError as exc:
            raise _error_from(exc.status, exc.body) from None
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]


def _answer(status: int, content_type: str | None, raw: bytes) -> Any:
    if status >= 300:
        raise _error_from(status, raw)
    if not raw:
        return None
    if "json" in (content_type or ""):
        return orjson.loads(raw)
    return raw.decode(errors="replace")


def _watch_event(line: bytes) -> dict[str, Any]:
    event = orjson.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise ApiError.from_status(int(status.get("code") or 500), status)
    return event


def _namespaced_hint(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("namespace"))


def _error_from(code: int, raw: bytes) -> ApiError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError.from_status(code, body)
    reason = _REASONS.get(code, "")
    return ApiError(code, reason, raw.decode(errors="replace")[:1000])


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


async def wait_ready(client: Client, *, timeout: float = 30) -> None:
    """Poll /readyz until the server answers ok (for tools and tests)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await client.request("GET", "/readyz")
            return
        except (aiohttp.ClientError, ApiError, OSError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
