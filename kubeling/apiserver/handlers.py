"""One handler per verb for every catalogue resource, plus the subresources with special meaning
(status, scale, binding, eviction, finalize).

Query parameters and answers follow k8s.io/apiserver/pkg/endpoints/handlers: create answers 201,
delete answers 200 when the object is gone and 202 when it waits for finalizers or a grace period,
and every failure is a metav1.Status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from kubeling.api import errors
from kubeling.apiserver import encoding, requestkeys
from kubeling.apiserver.registry import DeleteOptions, ListOptions, deep_copy, now_rfc3339
from kubeling.apiserver.requestinfo import RequestInfo
from kubeling.storage.interface import Event

if TYPE_CHECKING:
    from kubeling.api.catalogue import Resource
    from kubeling.apiserver.server import ApiServer

log = logging.getLogger(__name__)
Obj = dict[str, Any]
SubresourceHandler = Callable[[web.Request, "Resource", RequestInfo], Awaitable[web.StreamResponse]]

JSON = "application/json"
BOOKMARK_INTERVAL = 30.0  # seconds between watch bookmarks (upstream: about a minute)
_COALESCE_FRAMES = 1000  # a watch's reader waits once this many frames wait for the connection
_FIELD_VALIDATION = {"Strict", "Warn", "Ignore"}


# Go's encoding/json (so kube-apiserver) escapes these in strings; orjson does not. Clients compare
# bytes of embedded raw JSON (kubectl rollout undo: ControllerRevision data vs its own json.Marshal),
# so responses must carry Go's escapes. Outside strings JSON never contains these characters.
_GO_ESCAPES = ((b"&", b"\\u0026"), (b"<", b"\\u003c"), (b">", b"\\u003e"))
_GO_ESCAPES_LS_PS = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))  # both start 0xE2


def go_json(body: Any) -> bytes:
    """orjson's encoding with Go's HTML-safe string escapes, as kube-apiserver writes JSON."""
    return go_escape(orjson.dumps(body))


def go_escape(data: bytes) -> bytes:
    """JSON bytes from orjson with Go's HTML-safe string escapes."""
    # find(), not ``in``: bytes.__contains__ first tries its argument as an integer and raises
    # (and drops) a TypeError for a bytes one, ~1.6k instructions a test on every response
    for raw, escaped in _GO_ESCAPES:
        if data.find(raw) != -1:
            data = data.replace(raw, escaped)
    if data.find(b"\xe2") != -1:  # one byte scan instead of two 3-byte searches (each ~5x slower) for U+2028/9
        for raw, escaped in _GO_ESCAPES_LS_PS:
            if data.find(raw) != -1:
                data = data.replace(raw, escaped)
    return data


def json_response(body: Any, status: int = 200, *, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=go_json(body), status=status, content_type=JSON)
    for w in warnings or []:
        resp.headers.add("Warning", f'299 - "{_quote_warning(w)}"')
    return resp


def _quote_warning(text: str) -> str:
    """Escape a warning as Go's strconv.Quote does: a header must never carry control characters."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) > 0x7E:  # keep headers ASCII
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


async def read_raw(request: web.Request) -> bytes:
    """The whole body, refused with 413 past upstream's 3 MiB limit (a single read() may stop early)."""
    length = request.content_length
    if length is not None and length > encoding.MAX_BODY:
        raise errors.too_large()
    content = request.content
    if content.is_eof():  # the whole body came with the headers (the usual case): take it, no waiting
        data = content.read_nowait()
        if len(data) > encoding.MAX_BODY:
            raise errors.too_large()
        return data
    if length is not None:  # one read of a known size
        try:
            return await content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(256 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > encoding.MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


_NAMED_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _allow(res: Resource, verb: str) -> None:
    """405 for a verb the resource does not serve (a review cannot be read back; namespaces have no
    deletecollection), as upstream registers no route for it."""
    if verb not in res.verbs:
        raise errors.method_not_allowed()


@functools.cache
def _create_only() -> dict[tuple[str, str], Any]:
    from kubeling.apiserver.reviews import CREATE_ONLY  # imported late: it builds on this module

    return CREATE_ONLY


def status_success(res: Resource, name: str, uid: str | None = None, code: int = 200) -> Obj:
    details: Obj = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


class ResourceHandlers:
    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.registry = server.registry
        # subresources served elsewhere for some resources (the scale of custom resources):
        # name -> (does it apply to this resource, handler); the built-in handler serves the rest
        self._subresource_handlers: dict[str, tuple[Callable[[Resource], bool], SubresourceHandler]] = {}

    def register_subresource(self, name: str, handler: SubresourceHandler, *,
                             applies_to: Callable[[Resource], bool]) -> None:
        """Serve subresource ``name`` of the resources ``applies_to`` accepts with ``handler``."""
        self._subresource_handlers[name] = (applies_to, handler)

    # ---- dispatch -------------------------------------------------------------------------
    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        res = self.server.catalogue.lookup(info.group, info.version, info.resource)
        if res is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        if info.namespace is not None and not res.namespaced:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        if info.subresource and info.subresource not in res.subresources:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     details={})
        request[requestkeys.RESOURCE] = res
        method = request.method
        q = request.query
        if info.name is None:
            if method == "GET":
                if info.legacy_watch or _truthy(q.get("watch")):
                    _allow(res, "watch")
                    return await self.watch(request, res, info)
                _allow(res, "list")
                return await self.list(request, res, info)
            if method == "POST":
                return await self.create(request, res, info)
            if method == "DELETE":
                _allow(res, "deletecollection")
                return await self.delete_collection(request, res, info)
            raise errors.method_not_allowed()
        sub = info.subresource
        if sub in (None, "status"):
            if sub is None and method in _NAMED_VERBS:
                _allow(res, _NAMED_VERBS[method])
            if method == "GET":
                if info.legacy_watch or _truthy(q.get("watch")):
                    _allow(res, "watch")
                    return await self.watch(request, res, info)
                if sub is None and "as=" not in request.headers.get("Accept", ""):
                    # plain JSON: the stored bytes, with the resourceVersion spliced in
                    data = await self.registry.get_json(res, info.namespace, info.name)
                    if data is not None:
                        return web.Response(body=go_escape(data), content_type=JSON)
                obj = await self.registry.get(res, info.namespace, info.name)
                return self._respond_object(request, res, obj)
            if method == "PUT":
                return await self.update(request, res, info)
            if method == "PATCH":
                return await self.patch(request, res, info)
            if method == "DELETE" and sub is None:
                return await self.delete(request, res, info)
            if method == "POST" and sub is None:
                raise errors.method_not_allowed()
            raise errors.method_not_allowed()
        registered = self._subresource_handlers.get(sub)
        if registered is not None and registered[0](res):
            return await registered[1](request, res, info)
        if sub == "scale":
            return await self.scale(request, res, info)
        if sub == "binding" and method == "POST":
            return await self.binding(request, res, info)
        if sub == "eviction" and method == "POST":
            return await self.eviction(request, res, info)
        if sub == "finalize" and method == "PUT":
            return await self.update(request, res, info, subresource="finalize")
        if sub == "log" and method == "GET":
            obj = await self.registry.get(res, info.namespace, info.name)
            return web.Response(text=_fake_log(obj), content_type="text/plain")
        raise errors.method_not_allowed()

    # ---- helpers --------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> Any:
        raw = await read_raw(request)
        return encoding.decode_body(raw, request.headers.get("Content-Type", JSON))

    @staticmethod
    def _field_validation(request: web.Request) -> str:
        fv = request.query.get("fieldValidation") or "Warn"
        if fv not in _FIELD_VALIDATION:
            raise errors.bad_request(f"fieldValidation parameter unsupported: {fv}")
        return fv

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.bad_request(f"unsupported dry run option {v!r}; only All is supported")
        return bool(values)

    def _respond_object(self, request: web.Request, res: Resource, obj: Obj, status: int = 200,
                        warnings: list[str] | None = None) -> web.Response:
        accept = request.headers.get("Accept", "")
        if encoding.wants(accept, "Table"):
            include = request.query.get("includeObject", "Metadata")
            table = self.server.tables.to_table(res, [obj], include_object=include)
            table.setdefault("metadata", {})["resourceVersion"] = obj.get("metadata", {}).get("resourceVersion", "")
            return json_response(table, status, warnings=warnings)
        if encoding.wants(accept, "PartialObjectMetadata"):
            return json_response(encoding.partial_metadata(obj), status, warnings=warnings)
        return json_response(obj, status, warnings=warnings)

    def _list_options(self, request: web.Request, res: Resource) -> ListOptions:
        q = request.query
        opts = ListOptions()
        sel = self.server.selectors
        if q.get("labelSelector"):
            opts.label_selector = sel.parse_label_selector(q["labelSelector"])
        if q.get("fieldSelector"):
            opts.field_selector = sel.parse_field_selector(q["fieldSelector"])
            validate = getattr(sel, "validate_field_selector", None)
            if validate is not None:
                validate(res, opts.field_selector)
        if q.get("limit"):
            try:
                opts.limit = max(0, int(q["limit"]))
            except ValueError as exc:
                raise errors.bad_request(f'invalid limit: "{q["limit"]}"') from exc
        opts.continue_token = q.get("continue") or None
        opts.resource_version = q.get("resourceVersion", "")
        opts.resource_version_match = q.get("resourceVersionMatch", "")
        return opts

    # ---- verbs ----------------------------------------------------------------------------
    async def list(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        opts = self._list_options(request, res)
        accept = request.headers.get("Accept", "")
        if "as=" not in accept:  # plain JSON (as GET): made from the stored bytes when nothing needs the objects
            data = await self.registry.list_json(res, info.namespace, opts)
            if data is not None:
                return web.Response(body=go_escape(data), content_type=JSON)
        result = await self.registry.list(res, info.namespace, opts)
        if encoding.wants(accept, "Table"):
            include = request.query.get("includeObject", "Metadata")
            table = self.server.tables.to_table(res, result["items"], include_object=include)
            table["metadata"] = result["metadata"]
            return json_response(table)
        if encoding.wants(accept, "PartialObjectMetadataList") or encoding.wants(accept, "PartialObjectMetadata"):
            return json_response(encoding.partial_metadata_list(result))
        return json_response(result)

    async def create(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        if "create" not in res.verbs:
            raise errors.method_not_allowed()
        answer = _create_only().get((res.group, res.plural))  # reviews: answered from the request, never stored
        if answer is not None:
            return await answer(self, request, res, info)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        if res.group == "" and res.plural == "namespaces":
            info.namespace = None
        obj, warnings = await self.registry.create(
            res, info.namespace, body, field_validation=self._field_validation(request),
            dry_run=self._dry_run(request), user=request.get(requestkeys.USER))
        return self._respond_object(request, res, obj, 201, warnings)

    async def update(self, request: web.Request, res: Resource, info: RequestInfo,
                     subresource: str | None = None) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        assert info.name is not None
        obj, warnings = await self.registry.update(
            res, info.namespace, info.name, body, subresource=subresource or info.subresource,
            field_validation=self._field_validation(request), dry_run=self._dry_run(request),
            user=request.get(requestkeys.USER))
        return self._respond_object(request, res, obj, 200, warnings)

    async def patch(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = await read_raw(request)
        assert info.name is not None
        patcher = self.server.patcher
        schema_ref = getattr(res, "schema_ref", None)

        def mutate(current: Obj) -> Obj:  # current: guaranteed_update's private copy
            return patcher.apply_patch(ctype, current, raw, schema_ref=schema_ref, owned=True)

        if ctype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json", "application/apply-patch+yaml"):
            raise errors.unsupported_media_type(ctype)
        if ctype == "application/apply-patch+yaml" and request.query.get("fieldManager") is None:
            raise errors.bad_request("PATCH requests with application/apply-patch+yaml require fieldManager")
        try:
            obj, warnings = await self.registry.guaranteed_update(
                res, info.namespace, info.name, mutate, subresource=info.subresource,
                dry_run=self._dry_run(request), user=request.get(requestkeys.USER),
                field_validation=self._field_validation(request))
        except errors.StatusError as exc:
            if exc.code == 404 and ctype == "application/apply-patch+yaml":
                # server-side apply creates a missing object
                body = patcher.apply_patch(ctype, {}, raw, schema_ref=schema_ref)
                obj, warnings = await self.registry.create(
                    res, info.namespace, body, field_validation=self._field_validation(request),
                    dry_run=self._dry_run(request), user=request.get(requestkeys.USER))
                return self._respond_object(request, res, obj, 201, warnings)
            raise
        return self._respond_object(request, res, obj, 200, warnings)

    def _delete_options(self, request: web.Request, body: Any) -> DeleteOptions:
        opts = DeleteOptions()
        q = request.query
        if isinstance(body, dict):
            if body.get("gracePeriodSeconds") is not None:
                opts.grace_period_seconds = int(body["gracePeriodSeconds"])
            opts.propagation_policy = body.get("propagationPolicy")
            opts.orphan_dependents = body.get("orphanDependents")
            opts.preconditions = body.get("preconditions") or {}
            if body.get("dryRun"):
                opts.dry_run = True
        if q.get("gracePeriodSeconds") is not None:
            try:
                opts.grace_period_seconds = int(q["gracePeriodSeconds"])
            except ValueError as exc:
                raise errors.bad_request("invalid gracePeriodSeconds") from exc
        if q.get("propagationPolicy"):
            opts.propagation_policy = q["propagationPolicy"]
        if q.get("orphanDependents") is not None:
            opts.orphan_dependents = _truthy(q["orphanDependents"])
        if opts.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid_error("meta.k8s.io", "DeleteOptions", "", [errors.unsupported(
                "propagationPolicy", opts.propagation_policy, ["Foreground", "Background", "Orphan", "nil"])])
        opts.dry_run = opts.dry_run or self._dry_run(request)
        return opts

    async def delete(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        raw = await read_raw(request)
        body = encoding.decode_body(raw, JSON) if raw.strip() else None
        opts = self._delete_options(request, body)
        assert info.name is not None
        obj, deleted = await self.registry.delete(res, info.namespace, info.name, opts)
        if not deleted:
            return self._respond_object(request, res, obj, 202 if obj["metadata"].get("finalizers") else 200)
        if res.group == "" and res.plural in ("pods", "namespaces", "nodes", "services", "secrets",
                                              "configmaps", "serviceaccounts", "events"):
            # these registries set ReturnDeletedObject upstream
            return self._respond_object(request, res, obj, 200)
        return json_response(status_success(res, info.name, obj["metadata"].get("uid")))

    async def delete_collection(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        if "deletecollection" not in res.verbs:
            raise errors.method_not_allowed()
        raw = await read_raw(request)
        body = encoding.decode_body(raw, JSON) if raw.strip() else None
        opts = self._delete_options(request, body)
        lopts = self._list_options(request, res)
        listed = await self.registry.list(res, info.namespace, lopts)
        out = []
        for item in listed["items"]:
            meta = item["metadata"]
            with contextlib.suppress(errors.StatusError):
                obj, _ = await self.registry.delete(res, meta.get("namespace"), meta["name"], opts)
                out.append(obj)
        listed["items"] = out
        return json_response(listed)

    # ---- subresources ---------------------------------------------------------------------
    async def binding(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        target = body.get("target") or {}
        node = target.get("name")
        assert info.name is not None
        if not node:
            raise errors.invalid_error("", "Binding", info.name, [errors.required("target.name")])
        if not isinstance(node, str):
            go_kind = {bool: "bool", list: "array", dict: "object"}.get(type(node), "number")
            raise errors.bad_request(f"json: cannot unmarshal {go_kind} into Go struct field "
                                     "ObjectReference.target.name of type string")
        pods = res

        def assign(pod: Obj) -> Obj:
            """The bound pod, built of shallow copies: ``pod`` is the stored shared object."""
            spec = pod.get("spec") or {}
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods", info.name or "", "pod is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict("", "pods", info.name or "",
                                      f'pod {info.name} is already assigned to node "{spec["nodeName"]}"')
            status = pod.get("status") or {}
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            return {**pod, "metadata": dict(pod["metadata"]), "spec": {**spec, "nodeName": node},
                    "status": {**status, "conditions": conds}}

        await self.registry.guaranteed_update(pods, info.namespace, info.name, assign, subresource="binding",
                                              trusted=True, copy_on_write=True)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    async def eviction(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        body = await self._body(request)
        assert info.name is not None
        opts = DeleteOptions()
        if isinstance(body, dict) and isinstance(body.get("deleteOptions"), dict):
            d = body["deleteOptions"]
            if d.get("gracePeriodSeconds") is not None:
                opts.grace_period_seconds = int(d["gracePeriodSeconds"])
            opts.preconditions = d.get("preconditions") or {}
        pod = await self.registry.get(res, info.namespace, info.name)
        await self.server.check_disruption_budgets(pod)
        await self.registry.delete(res, info.namespace, info.name, opts)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    async def scale(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        assert info.name is not None
        if request.method == "GET":
            obj = await self.registry.get(res, info.namespace, info.name)
            return json_response(to_scale(obj))
        if request.method == "PUT":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise errors.bad_request("the body of the request was not a JSON object")
            replicas = (body.get("spec") or {}).get("replicas", 0)
            want_rv = (body.get("metadata") or {}).get("resourceVersion")

            def set_replicas(obj: Obj) -> Obj:
                if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
                    raise errors.conflict(res.group, res.plural, info.name or "", errors.OBJECT_MODIFIED)
                obj.setdefault("spec", {})["replicas"] = replicas
                return obj
        elif request.method == "PATCH":
            ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            raw = await read_raw(request)

            def set_replicas(obj: Obj) -> Obj:
                scale = self.server.patcher.apply_patch(ctype, to_scale(obj), raw,
                                                        schema_ref="io.k8s.api.autoscaling.v1.Scale")
                obj.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
                return obj
        else:
            raise errors.method_not_allowed()
        obj, _ = await self.registry.guaranteed_update(res, info.namespace, info.name, set_replicas)
        return json_response(to_scale(obj))

    # ---- watch ----------------------------------------------------------------------------
    async def watch(self, request: web.Request, res: Resource, info: RequestInfo) -> web.StreamResponse:
        opts = self._list_options(request, res)
        q = request.query
        send_initial = _truthy(q.get("sendInitialEvents"))
        if send_initial and opts.resource_version_match != "NotOlderThan":
            raise errors.invalid_error("meta.k8s.io", "ListOptions", "", [errors.forbidden(
                "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        timeout = None
        if q.get("timeoutSeconds"):
            with contextlib.suppress(ValueError):
                timeout = max(0, int(q["timeoutSeconds"]))
        if timeout is None:
            # upstream picks a random timeout in [minRequestTimeout, 2*minRequestTimeout) (30..60 min)
            timeout = int(1800 * (1 + random.random()))
        as_table = encoding.wants(request.headers.get("Accept", ""), "Table")
        as_meta = encoding.wants(request.headers.get("Accept", ""), "PartialObjectMetadata")
        include = q.get("includeObject", "Metadata")
        name = info.name
        if opts.field_selector is not None and name is None:
            name = _single_name(opts.field_selector)
        events = self.registry.watch(res, info.namespace, name, opts, send_initial_events=send_initial)
        # open the storage watch before answering: other errors stay plain HTTP errors, but as
        # upstream's watch cache (errWatcher) a too-old resourceVersion answers 200 and one ERROR
        # event carrying the 410 Expired Status
        first: tuple[str, Obj] | None = None
        expired: errors.StatusError | None = None
        pending = asyncio.ensure_future(events.__anext__())
        done, _ = await asyncio.wait({pending}, timeout=0.05)
        if done:
            try:
                first = pending.result()
            except StopAsyncIteration:
                first = None
            except errors.StatusError as exc:
                if exc.code != 410:
                    raise
                expired = exc
            pending = None  # type: ignore[assignment]
        # the in-process loopback's requests bring their own stream (no socket to write to)
        make_stream = getattr(request, "make_stream_response", None)
        resp = make_stream() if make_stream is not None else web.StreamResponse(status=200)
        resp.content_type = JSON
        resp.enable_chunked_encoding()
        resp.headers["Cache-Control"] = "no-cache, private"
        await resp.prepare(request)
        self.server.metrics.watchers_inc(res)
        last_rv = str(self.registry.store.current_revision())

        plain = not as_table and not as_meta
        # an in-process informer (the loopback) takes the events as objects: the store event's decoded
        # object, one for every such watcher, instead of a frame each encodes and it decodes again
        objects = plain and getattr(resp, "objects", False)
        pack: Callable[[list[Any]], Any] = list if objects else b"".join

        def frame(kind: str, obj: Obj) -> bytes:
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                if plain:
                    return go_json({"type": kind, "object": obj}) + b"\n"
                if as_table:
                    table = self.server.tables.to_table(res, [obj], include_object=include)
                    table.setdefault("metadata", {})["resourceVersion"] = obj["metadata"].get("resourceVersion", "")
                    obj = table
                else:
                    obj = encoding.partial_metadata(obj)
            return go_json({"type": kind, "object": obj}) + b"\n"

        def bookmark(rv: str, initial_end: bool = False) -> Any:  # a frame, or an event in objects mode
            meta: Obj = {"resourceVersion": rv}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
            if as_table or as_meta:
                obj = {"kind": "PartialObjectMetadata" if as_meta else res.kind,
                       "apiVersion": "meta.k8s.io/v1" if as_meta else res.api_version, "metadata": meta}
            if objects:
                return {"type": "BOOKMARK", "object": obj}
            return go_json({"type": "BOOKMARK", "object": obj}) + b"\n"

        def encode(item: tuple[str, Obj | Event]) -> Any:  # a frame, or an event in objects mode
            nonlocal last_rv
            kind, obj = item
            if isinstance(obj, Event):  # a change as the store keeps it
                last_rv = str(obj.revision)
                if objects:
                    return {"type": kind, "object": obj.object}
                if plain:
                    return _FRAMES.frame(kind, obj)  # made from the stored bytes, shared by every watcher
                obj = obj.object
            elif kind == "INITIAL_END":
                last_rv = str(obj["revision"])
                return bookmark(last_rv, True)
            else:
                last_rv = obj["metadata"].get("resourceVersion", last_rv)
            if objects:
                return {"type": kind, "object": obj}
            return frame(kind, obj)

        # A reader task encodes events into ``frames`` as they come; this coroutine writes whatever
        # has gathered as one chunk (a group commit's events leave in one write, not one each) and
        # the bookmarks. No task per event; back-pressure: the reader waits while frames pile up.
        frames: list[bytes] = []
        wake = asyncio.Event()  # frames to write, the reader stopped, a bookmark or the deadline is due
        room = asyncio.Event()
        room.set()
        outcome: list[BaseException | None] = []  # the reader's end: [None] or [its exception]

        async def read(waiting: asyncio.Future[tuple[str, Obj]] | None) -> None:
            try:
                while True:
                    try:
                        item = await waiting if waiting is not None else await events.__anext__()
                    except StopAsyncIteration:
                        break
                    waiting = None
                    frames.append(encode(item))
                    wake.set()
                    if len(frames) >= _COALESCE_FRAMES:
                        room.clear()
                        await room.wait()
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - handed to the writer (410 and the like)
                outcome.append(exc)
            finally:
                wake.set()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        due = {"bookmark": False, "deadline": False}

        def alarm(what: str) -> None:
            due[what] = True
            wake.set()

        timers = [loop.call_later(timeout, alarm, "deadline"), loop.call_later(BOOKMARK_INTERVAL, alarm, "bookmark")]
        reader: asyncio.Task[None] | None = None
        try:
            if expired is not None:
                raise expired
            if first is not None:
                await resp.write(pack([encode(first)]))
            reader = asyncio.ensure_future(read(pending))
            pending = None  # type: ignore[assignment]  # the reader owns it now
            while True:
                await wake.wait()
                wake.clear()
                if frames:
                    chunk = pack(frames)
                    frames.clear()
                    room.set()
                    await resp.write(chunk)
                if due["deadline"] or loop.time() >= deadline:
                    break
                if frames:
                    continue  # more came during the write
                if outcome:
                    if outcome[0] is not None:
                        raise outcome[0]
                    break
                if due["bookmark"]:
                    due["bookmark"] = False
                    timers[1] = loop.call_later(BOOKMARK_INTERVAL, alarm, "bookmark")
                    if bookmarks:
                        await resp.write(pack([bookmark(str(max(int(last_rv or 0),
                                                                self.registry.store.current_revision())))]))
        except errors.StatusError as exc:
            with contextlib.suppress(Exception):
                error = {"type": "ERROR", "object": exc.status}
                await resp.write([error] if objects else go_json(error) + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for timer in timers:
                timer.cancel()
            for task in (pending, reader):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
            self.server.metrics.watchers_dec(res)
        with contextlib.suppress(Exception):
            await resp.write_eof()
        return resp


class _FrameCache:
    """Watch frames of the newest events, made once for all the watchers that send them.

    Keyed by the store event's identity (the store hands every watcher the same read-only Event);
    an entry keeps its event alive, so an id is never reused while it is cached. A frame is the
    stored bytes with the resourceVersion spliced in (Event.json) and Go's escapes, never a decoded
    and re-encoded object.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._frames: dict[int, tuple[Event, str, bytes]] = {}

    def frame(self, kind: str, ev: Event) -> bytes:
        hit = self._frames.get(id(ev))
        if hit is not None and hit[0] is ev and hit[1] == kind:
            return hit[2]
        data = b"".join((b'{"type":"', kind.encode(), b'","object":', go_escape(ev.json()), b"}\n"))
        frames = self._frames
        if len(frames) >= self._size:
            del frames[next(iter(frames))]
        frames[id(ev)] = (ev, kind, data)
        return data


_FRAMES = _FrameCache()


def _single_name(selector: Any) -> str | None:
    """A `metadata.name=x` field selector lets the watch look at one key only."""
    reqs = getattr(selector, "requirements", None)
    if not reqs:
        return None
    for r in reqs:
        field = getattr(r, "field", None) or (r[0] if isinstance(r, tuple) else None)
        op = getattr(r, "operator", None) or (r[1] if isinstance(r, tuple) else None)
        value = getattr(r, "value", None) or (r[2] if isinstance(r, tuple) else None)
        if field == "metadata.name" and op in ("=", "=="):
            return value
    return None


def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true", "yes")


def to_scale(obj: Obj) -> Obj:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    selector = ""
    sel = spec.get("selector")
    if isinstance(sel, dict):
        parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
        for e in sel.get("matchExpressions") or []:
            op = e.get("operator")
            if op == "In":
                parts.append(f"{e['key']} in ({','.join(sorted(e.get('values') or []))})")
            elif op == "NotIn":
                parts.append(f"{e['key']} notin ({','.join(sorted(e.get('values') or []))})")
            elif op == "Exists":
                parts.append(e["key"])
            elif op == "DoesNotExist":
                parts.append("!" + e["key"])
        selector = ",".join(parts)
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector}}


def _fake_log(pod: Obj) -> str:
    started = (pod.get("status") or {}).get("startTime") or dt.datetime.now(dt.UTC).isoformat()
    name = pod["metadata"]["name"]
    return f"{started} kubeling simulated container log for pod {name}\n"


__all__ = ["ResourceHandlers", "deep_copy", "json_response"]
