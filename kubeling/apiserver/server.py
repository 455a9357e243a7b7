"""The API server: an aiohttp application over the registry, HTTPS and bearer tokens.

Routes are one explicit list built at start-up; resource paths share one
catch-all that parses upstream's RequestInfo and dispatches by verb.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kubeling.api import errors
from kubeling.apiserver import requestkeys
from kubeling.apiserver.admission import Admission
from kubeling.apiserver.handlers import ResourceHandlers, json_response
from kubeling.apiserver.registry import Registry
from kubeling.apiserver.requestinfo import parse_resource_path
from kubeling.storage.interface import Store

log = logging.getLogger(__name__)

GIT_VERSION = "v1.32.4"
VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": GIT_VERSION + "+kubeling",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10b2c375", "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:03:51Z", "goVersion": "go1.23.6", "compiler": "gc",
    "platform": "linux/amd64",
}
ANONYMOUS_PATHS = {"/livez", "/readyz", "/healthz", "/version", "/version/"}
# written all the time by any cluster (kubelets' pods and leases, node status, events): their schema
# checks are compiled shortly after start-up rather than at their 101st write (schema.COMPILE_AFTER)
HOT_RESOURCES = (("", "v1", "pods"), ("coordination.k8s.io", "v1", "leases"), ("", "v1", "nodes"),
                 ("", "v1", "events"), ("events.k8s.io", "v1", "events"))
PRECOMPILE_AFTER = 1.0  # seconds after start-up
_OPENAPI_V3_DOC = "/openapi/v3/"  # followed by a group-version path: one document
_STATIC_USERS_LIMIT = 1024  # Authorization headers remembered; past it, the rest are parsed each time


class Metrics:
    """apiserver_* metrics with upstream's names, on a registry of their own."""

    def __init__(self) -> None:
        # imported here: prometheus_client is ~25 ms of start-up that only /metrics and requests need
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request_total", "Counter of apiserver requests",
                                ["verb", "group", "version", "resource", "subresource", "code"],
                                registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "Response latency distribution",
                                 ["verb", "group", "version", "resource", "subresource"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Number of currently registered watchers",
                              ["group", "kind"], registry=self.registry)
        self.storage_objects = Gauge("apiserver_storage_objects", "Number of stored objects",
                                     ["resource"], registry=self.registry)
        # labels() builds and checks a key per call; every request would pay that twice
        self._children: dict[tuple[Any, ...], tuple[Any, Any]] = {}

    def observe(self, verb: str, res: Any, sub: str, code: int, seconds: float | None) -> None:
        """Count a request (and its latency unless ``seconds`` is None, as for watches)."""
        key = (verb, res.group, res.version, res.plural, sub, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(verb, res.group, res.version, res.plural, sub, str(code)),
                None if seconds is None else self.latency.labels(verb, res.group, res.version, res.plural, sub))
        children[0].inc()
        if seconds is not None and children[1] is not None:
            children[1].observe(seconds)

    def watchers_inc(self, res: Any) -> None:
        self.watchers.labels(res.group, res.kind).inc()

    def watchers_dec(self, res: Any) -> None:
        self.watchers.labels(res.group, res.kind).dec()


def _verb(method: str, request: web.Request, has_name: bool) -> str:
    if method == "GET":
        if request.query.get("watch") in ("true", "1"):
            return "WATCH"
        return "GET" if has_name else "LIST"
    return {"POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE"}.get(method, method)


class ApiServer:
    def __init__(self, store: Store, *, tokens: dict[str, dict[str, Any]]) -> None:
        from kubeling.api import defaults, schema, selectors, strategies, tables
        from kubeling.api.catalogue import CATALOGUE
        from kubeling.apiserver import patch

        self.store = store
        self.tokens = tokens
        self.catalogue = CATALOGUE
        self.tables = tables
        self.selectors = selectors
        self.patcher = patch
        self.registry = Registry(store, admission=None, strategies=strategies, schema=schema,
                                 defaults=defaults, selectors=selectors)
        self.registry.admission = Admission(self.registry, self.catalogue)
        self.handlers = ResourceHandlers(self)
        self.ready = False
        # Authorization header -> user, for static tokens: the file is read once at start-up (as
        # upstream's --token-auth-file), so a header once matched always means the same user
        self._static_users: dict[str, dict[str, Any]] = {}
        # called with (request, response) on every answer a handler returned (apiextensions' warnings)
        self.response_hooks: list[Callable[[Any, web.StreamResponse], None]] = []
        self._exact_get = self.exact_get_routes()
        # awaited by start(), before the server takes requests (apiextensions serves stored CRDs)
        self.startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self._precompiling: asyncio.Task[None] | None = None
        self._http: web.Server | None = None
        from kubeling.apiextensions.wiring import install  # CRDs and admission webhooks

        self.apiextensions = install(self)
        from kubeling.apiserver import tokens  # serviceaccounts/token and the JWTs it issues

        self.sa_tokens = tokens.install(self)

    @cached_property
    def metrics(self) -> Metrics:
        """Made on first use (the first resource request), not at start-up."""
        return Metrics()

    async def start(self) -> None:
        """What must happen after bootstrap and before the first request; then, in the background,
        the schema checks of the kinds every cluster writes all the time are compiled."""
        for hook in self.startup_hooks:
            await hook()
        self._precompiling = asyncio.get_running_loop().create_task(self._precompile_hot_kinds(),
                                                                    name="precompile-schemas")

    async def close(self) -> None:
        if self._precompiling is not None:
            self._precompiling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._precompiling

    async def _precompile_hot_kinds(self) -> None:
        from kubeling.api import schema

        await asyncio.sleep(PRECOMPILE_AFTER)  # start-up's own work first
        for group, version, plural in HOT_RESOURCES:
            res = self.catalogue.lookup(group, version, plural)
            if res is not None:
                schema.precompile(res)
            await asyncio.sleep(0)  # requests go on between two compiles

    # ---- HTTP -------------------------------------------------------------------------------
    def http_server(self) -> web.Server:
        """aiohttp's low-level server around ``route`` (made in the serving loop; one per ApiServer).

        Not a web.Application: the server routes every request itself (one dict look-up, then the
        resource dispatcher), so the Application's router, match info and middleware chain were
        pure cost: ~38k instructions per request of the ~190k aiohttp spends (callgrind). Bodies
        may be up to 4 MiB, so the 3 MiB limit of the handlers answers first (413 as a Status)."""
        if self._http is None:
            def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
                return web.BaseRequest(message, payload, protocol, writer, task, task.get_loop(),
                                       client_max_size=4 * 1024 * 1024)

            self._http = web.Server(self.serving(self.route), request_factory=make_request, access_log=None)
        return self._http

    def serving(self, handler: Any) -> Any:
        """``handler`` behind _serve_mw, as a middleware would put it, bound once rather than per
        request. HTTP and the loopback both serve through it, so no request goes without.
        Extensions add response_hooks."""
        return functools.partial(self._serve_mw, handler=handler)

    def exact_get_routes(self) -> dict[str, Any]:
        """The non-resource GET endpoints served at exact paths."""
        routes: dict[str, Any] = {"/version": self.version, "/version/": self.version}
        routes.update(dict.fromkeys(("/healthz", "/livez", "/readyz"), self.health))
        routes["/metrics"] = self.metrics_handler
        routes.update(dict.fromkeys(("/api", "/api/", "/apis", "/apis/"), self.discovery))
        routes["/openapi/v2"] = self.openapi_v2
        routes["/openapi/v3"] = self.openapi_v3_index
        return routes

    async def route(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request's handler: the exact GET paths, an OpenAPI v3 document, else the resource
        dispatcher (which also serves discovery below /api and /apis)."""
        method = request.method
        if method == "GET" or method == "HEAD":
            handler = self._exact_get.get(request.path)
            if handler is not None:
                return await handler(request)
            if request.path.startswith(_OPENAPI_V3_DOC) and len(request.path) > len(_OPENAPI_V3_DOC):
                return await self.openapi_v3_doc(request)
        if request.headers.get("Expect", "").lower() == "100-continue":
            # what aiohttp's router answers for the client to go on sending the body
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return await self.dispatch(request)

    async def _serve_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Everything a request goes through around its handler, in one middleware (one frame per
        request, not three): authentication, the response hooks, errors as metav1.Status, metrics."""
        start = time.perf_counter()
        code = 500
        try:
            if request.path not in ANONYMOUS_PATHS:
                user = self._static_users.get(request.headers.get("Authorization", ""))
                request[requestkeys.USER] = user if user is not None else await self._authenticate(request)
            resp = await handler(request)
            for hook in self.response_hooks:
                hook(request, resp)
            code = resp.status
            return resp
        except errors.StatusError as exc:
            code = exc.code
            return json_response(exc.status, exc.code)
        except web.HTTPException as exc:
            code = exc.status
            if exc.status == 413:
                return json_response(errors.too_large().status, 413)
            raise
        except Exception as exc:  # noqa: BLE001 - never a bare 500 page: a Status with the cause
            log.exception("internal error serving %s %s", request.method, request.path)
            return json_response(errors.internal(repr(exc)).status, 500)
        finally:
            res = request.get(requestkeys.RESOURCE)
            if res is not None:
                info = request.get(requestkeys.INFO)
                verb = _verb(request.method, request, bool(info and info.name))
                sub = (info.subresource if info else None) or ""
                self.metrics.observe(verb, res, sub, code,
                                     None if verb == "WATCH" else time.perf_counter() - start)

    async def _authenticate(self, request: web.Request) -> dict[str, Any]:
        """The user of the request's bearer token (a static one or a ServiceAccount JWT); else 401."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:].strip()
            user = self.tokens.get(token)
            if user is not None:
                if len(self._static_users) < _STATIC_USERS_LIMIT:
                    self._static_users[auth] = user
                return user
            user = await self.sa_tokens.authenticate(token)
            if user is not None:
                return user
        raise errors.unauthorized()

    # ---- non-resource endpoints -------------------------------------------------------------
    async def version(self, request: web.Request) -> web.Response:
        return json_response(VERSION_INFO)

    async def health(self, request: web.Request) -> web.Response:
        if request.path == "/readyz" and not self.ready:
            return web.Response(status=500, text="[-]bootstrap not finished\nreadyz check failed\n")
        return web.Response(text="ok", content_type="text/plain")

    async def metrics_handler(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def discovery(self, request: web.Request) -> web.Response:
        from kubeling.api import discovery

        found = discovery.discovery_response(self.catalogue, request.path, request.headers.get("Accept"),
                                             server_address=request.host)
        if found is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        body, ctype = found
        # the answer depends on Accept (aggregated or legacy discovery): caches must key on it
        return web.Response(body=orjson.dumps(body), headers={"Content-Type": ctype, "Vary": "Accept"})

    async def openapi_v2(self, request: web.Request) -> web.Response:
        from kubeling.apiserver import openapi_proto

        # JSON or gnostic's protobuf (kubectl's validation asks for it), with upstream's ETag and 304s
        return await openapi_proto.serve(request, self.apiextensions.openapi_v2())

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        return json_response(self.apiextensions.openapi_v3_index())

    async def openapi_v3_doc(self, request: web.Request) -> web.Response:
        path = request.path[len(_OPENAPI_V3_DOC):]
        body = self.apiextensions.openapi_v3_doc(path)
        if body is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource")
        headers = {"Content-Type": "application/json"}
        want = request.query.get("hash")
        if want and want == self.apiextensions.openapi_v3_hash(path):
            headers["Cache-Control"] = "public, immutable"
        elif want:
            # a stale hash: send the client to the current document, as upstream does
            raise web.HTTPMovedPermanently(f"/openapi/v3/{path}?hash={self.apiextensions.openapi_v3_hash(path)}")
        else:
            headers["Cache-Control"] = "no-cache, private"
        return web.Response(body=body, headers=headers)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        info = parse_resource_path(request.path)
        if info is None:
            if request.method == "GET":
                return await self.discovery(request)
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        request[requestkeys.INFO] = info
        return await self.handlers.handle(request, info)

    async def check_disruption_budgets(self, pod: dict[str, Any]) -> None:
        """Eviction honours PodDisruptionBudgets whose selector matches and allow no disruption."""
        pdbs = self.catalogue.lookup("policy", "v1", "poddisruptionbudgets")
        if pdbs is None:
            return
        ns = pod["metadata"].get("namespace")
        page = await self.store.list(self.registry.prefix(pdbs, ns))
        labels = pod["metadata"].get("labels") or {}
        for pdb in page.items:
            sel = (pdb.get("spec") or {}).get("selector")
            if sel is None:
                continue
            if not self.selectors.label_selector_from_dict(sel).matches(labels):
                continue
            allowed = (pdb.get("status") or {}).get("disruptionsAllowed", 0)
            if allowed <= 0:
                raise errors.StatusError(
                    429, "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    details={"causes": [{"reason": "DisruptionBudget",
                                         "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                                    f"{(pdb.get('status') or {}).get('desiredHealthy', 0)} "
                                                    f"healthy pods and has "
                                                    f"{(pdb.get('status') or {}).get('currentHealthy', 0)} "
                                                    f"currently"}]})


def make_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    # not create_default_context(CLIENT_AUTH): it loads the system CA bundle (~0.1 s at start-up) to
    # verify client certificates, which are never requested (verify_mode stays CERT_NONE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
