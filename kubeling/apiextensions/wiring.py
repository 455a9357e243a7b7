"""How CRDs plug into the API server without the generic code knowing about them.

``install(server)`` puts a thin dispatcher in front of each per-kind module the registry and
handlers already call (schema, defaults, strategies, tables, selectors, admission): a custom
resource goes to this package, anything else to the built-in module unchanged. It also adds
the registry's after-write hook that (re)registers CRDs, an aiohttp start-up step that loads
stored CRDs before the server reports ready, a response hook for deprecated-version warnings,
version conversion as the registry's ``convert`` hook (strategy None: the apiVersion changes;
Webhook: a clear error, since no conversion webhook is called) and the ``scale`` subresource of
custom resources, registered with the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kubeling.api import errors
from kubeling.api.catalogue import Resource
from kubeling.apiextensions import crd, printers, structural
from kubeling.apiextensions.crd import CUSTOM, CustomVersion, custom_for
from kubeling.apiextensions.strategy import CrdStrategy, CustomStrategy
from kubeling.apiserver import requestkeys

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_CRD_GROUP, _CRD_PLURAL = "apiextensions.k8s.io", "customresourcedefinitions"


def _custom(resource: Any) -> CustomVersion | None:
    """custom_for, with no look-up at all while no CRD is served (every request asks, several times)."""
    return custom_for(resource) if CUSTOM else None


def _is_crd(resource: Any) -> bool:
    return getattr(resource, "group", None) == _CRD_GROUP and getattr(resource, "plural", None) == _CRD_PLURAL


class _Delegating:
    def __init__(self, base: Any) -> None:
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


class SchemaDispatch(_Delegating):
    def validate(self, resource: Any, obj: Obj, *, field_validation: str = "Strict") -> tuple[list[Any], list[str]]:
        info = _custom(resource)
        if info is None:
            return self._base.validate(resource, obj, field_validation=field_validation)
        unknown = structural.prune(info.schema, obj)
        if field_validation == "Strict" and unknown:
            return [errors.FieldError("Unknown field", p) for p in unknown], []
        if field_validation == "Warn":
            return [], [f'unknown field "{p}"' for p in unknown]
        return [], []


class DefaultsDispatch(_Delegating):
    def __init__(self, base: Any) -> None:
        super().__init__(base)
        # every write of every kind comes through here: with the built-in module's table at hand, a
        # built-in kind goes straight to its defaulter (what base.apply_defaults does, one call less)
        self._builtin = base.apply_defaults
        self._defaulters: dict[tuple[str, str], Callable[[Obj], None]] | None = getattr(base, "DEFAULTERS", None)

    def apply_defaults(self, resource: Any, obj: Obj) -> None:
        info = custom_for(resource) if CUSTOM else None
        if info is not None:
            structural.apply_defaults(info.schema, obj)
            return
        defaulters = self._defaulters
        try:
            fn = defaulters.get((resource.group, resource.kind))  # type: ignore[union-attr]
        except AttributeError:  # no table, or a (group, version, kind) tuple: the module sorts it out
            self._builtin(resource, obj)
            return
        if fn is not None and isinstance(obj, dict):
            fn(obj)


class StrategyDispatch(_Delegating):
    def __init__(self, base: Any, catalogue: Any) -> None:
        super().__init__(base)
        self._catalogue = catalogue

    def strategy_for(self, resource: Any, subresource: str | None = None) -> Any:
        info = _custom(resource)
        if info is not None:
            return CustomStrategy(info, namespaced=resource.namespaced, subresource=subresource)
        s = self._base.strategy_for(resource, subresource)
        if _is_crd(resource):
            return CrdStrategy(s, self._catalogue, subresource=subresource)
        return s


class TablesDispatch(_Delegating):
    def to_table(self, resource: Any, objects: list[Obj], **kw: Any) -> Obj:
        info = _custom(resource)
        if info is None:
            return self._base.to_table(resource, objects, **kw)
        kw.pop("wide", None)
        kw.pop("now", None)
        return printers.to_table(info.columns, objects, **kw)


class SelectorsDispatch(_Delegating):
    def field_set(self, resource: Any, obj: Obj) -> dict[str, str]:
        info = _custom(resource)
        if info is None:
            return self._base.field_set(resource, obj)
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name", "")}
        if resource.namespaced:
            out["metadata.namespace"] = meta.get("namespace", "")
        for path in info.selectable_fields:
            found = printers.jsonpath(obj, "." + path)
            value = found[0] if found else ""
            out[path] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def validate_field_selector(self, resource: Any, selector: Any) -> Any:
        info = _custom(resource)
        if info is None:
            return self._base.validate_field_selector(resource, selector)
        if isinstance(selector, str):
            selector = self._base.parse_field_selector(selector)
        allowed = {"metadata.name", "metadata.namespace", *info.selectable_fields}
        for t in selector.terms:
            if t.field not in allowed:
                raise errors.bad_request(f'"{t.field}" is not a known field selector: only "metadata.name", '
                                         f'"metadata.namespace"' + "".join(f', "{f}"' for f in info.selectable_fields))
        return selector


class AdmissionChain(_Delegating):
    """Built-in admission, then mutating webhooks, then validating webhooks (upstream's order)."""

    def __init__(self, base: Any, webhooks: Any) -> None:
        super().__init__(base)
        self._webhooks = webhooks

    # Webhooks.admit returns at once when no webhook is configured (most clusters): that coroutine is
    # spared while the loaded configurations are known to be empty.

    async def admit_create(self, resource: Resource, obj: Obj, *, user: dict[str, Any] | None) -> None:
        await self._base.admit_create(resource, obj, user=user)
        if not self._webhooks.known_empty():
            await self._webhooks.admit("CREATE", resource, obj, None, user=user)

    async def admit_update(self, resource: Resource, new: Obj, old: Obj, *, user: dict[str, Any] | None) -> None:
        await self._base.admit_update(resource, new, old, user=user)
        if not self._webhooks.known_empty():
            await self._webhooks.admit("UPDATE", resource, new, old, user=user)

    async def admit_delete(self, resource: Resource, obj: Obj) -> None:
        await self._base.admit_delete(resource, obj)
        if not self._webhooks.known_empty():
            await self._webhooks.admit("DELETE", resource, None, obj, user=None)


# ---- conversion between versions -------------------------------------------------------------


def convert(resource: Resource, obj: Obj) -> Obj:
    """An object read through ``resource``'s version (strategy None: only apiVersion changes)."""
    info = _custom(resource)
    if info is None or not isinstance(obj, dict) or obj.get("apiVersion") in (None, resource.api_version):
        return obj
    strategy = (info.conversion or {}).get("strategy") or "None"
    if strategy == "Webhook":
        raise errors.StatusError(500, "InternalError", _webhook_failure(info, obj))
    out = dict(obj)
    out["apiVersion"] = resource.api_version
    return out


def _webhook_failure(info: CustomVersion, obj: Obj) -> str:
    cc = ((info.conversion.get("webhook") or {}).get("clientConfig")) or {}
    if cc.get("url"):
        url = cc["url"]
    else:
        svc = cc.get("service") or {}
        url = f"https://{svc.get('name', '')}.{svc.get('namespace', '')}.svc:{svc.get('port', 443)}{svc.get('path', '')}"
    return (f"Internal error occurred: conversion webhook for {obj.get('apiVersion')}, Kind={info.kind} failed: "
            f'Post "{url}?timeout=30s": conversion webhooks are not called by kubeling; objects stored as '
            f"{obj.get('apiVersion')} cannot be served as {info.api_version}")


# ---- scale subresource -------------------------------------------------------------------------


def _get_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _set_path(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _to_scale(info: CustomVersion, obj: Obj) -> Obj:
    sc = info.scale or {}
    meta = obj["metadata"]
    status: Obj = {"replicas": _get_path(obj, sc.get("statusReplicasPath", "")) or 0}
    if sc.get("labelSelectorPath"):
        sel = _get_path(obj, sc["labelSelectorPath"])
        if sel:
            status["selector"] = sel
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": _get_path(obj, sc.get("specReplicasPath", "")) or 0}, "status": status}


def _is_custom(resource: Resource) -> bool:
    return _custom(resource) is not None


def _scale_handler(server: Any) -> Callable[[web.Request, Resource, Any], Awaitable[web.StreamResponse]]:
    """The ``scale`` subresource of custom resources, through the CRD's replicas paths."""

    async def scale(request: web.Request, res: Resource, info: Any) -> web.StreamResponse:
        custom = custom_for(res)
        assert custom is not None  # registered for custom resources only
        from kubeling.apiserver.handlers import json_response, read_raw

        registry = server.registry
        if request.method == "GET":
            return json_response(_to_scale(custom, await registry.get(res, info.namespace, info.name)))
        raw = await read_raw(request)
        ctype = (request.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()

        def set_replicas(obj: Obj) -> Obj:
            current = _to_scale(custom, obj)
            if request.method == "PUT":
                from kubeling.apiserver import encoding

                body = encoding.decode_body(raw, ctype)
                want_rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
                if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
                    raise errors.conflict(res.group, res.plural, info.name or "", errors.OBJECT_MODIFIED)
                new = body
            elif request.method == "PATCH":
                new = server.patcher.apply_patch(ctype, current, raw, schema_ref="io.k8s.api.autoscaling.v1.Scale")
            else:
                raise errors.method_not_allowed()
            _set_path(obj, custom.scale["specReplicasPath"], int((new.get("spec") or {}).get("replicas") or 0))
            return obj

        obj, _ = await registry.guaranteed_update(res, info.namespace, info.name, set_replicas)
        return json_response(_to_scale(custom, obj))

    return scale


# ---- the CRD lifecycle -------------------------------------------------------------------------


class CrdController:
    """Registers CRDs in the catalogue as they are written, and cleans up deleted ones."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.catalogue = server.catalogue
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        # whether any served custom version is deprecated: the warning middleware's fast exit
        self.serves_deprecated = False

    def register(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("NamesAccepted") == "False":
            return
        rows = crd.build(obj)
        keep = {(r.group, r.version, r.plural) for r, _ in rows}
        for key, info in list(CUSTOM.items()):
            if info.crd_name == name and key not in keep:
                CUSTOM.pop(key, None)
                self.catalogue.remove(*key)
        for res, info in rows:
            CUSTOM[(res.group, res.version, res.plural)] = info
            self.catalogue.add(res)
        self._note_deprecations()

    def unregister(self, name: str) -> None:
        for key, info in list(CUSTOM.items()):
            if info.crd_name == name:
                CUSTOM.pop(key, None)
                self.catalogue.remove(*key)
        self._note_deprecations()

    def _note_deprecations(self) -> None:
        self.serves_deprecated = any(info.deprecated for info in CUSTOM.values())

    async def after_write(self, verb: str, resource: Resource, obj: Obj) -> None:
        if _is_crd(resource):
            name = obj["metadata"]["name"]
            if verb == "delete":
                self.unregister(name)
                return
            self.register(obj)
            if obj["metadata"].get("deletionTimestamp"):
                self._schedule_cleanup(obj)
            return
        info = _custom(resource)
        if info is not None and verb == "delete":
            crd_obj = await self._crd(info.crd_name)
            if crd_obj is not None and crd_obj["metadata"].get("deletionTimestamp"):
                self._schedule_cleanup(crd_obj)

    async def _crd(self, name: str) -> Obj | None:
        res = self.catalogue.lookup(_CRD_GROUP, "v1", _CRD_PLURAL)
        return await self.server.store.get(self.server.registry.key(res, None, name))

    def _schedule_cleanup(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        task = self._cleanups.get(name)
        if task is not None and not task.done():
            return
        self._cleanups[name] = asyncio.get_running_loop().create_task(self._cleanup(obj))

    async def _cleanup(self, obj: Obj) -> None:
        """Delete every object of the CRD; drop the finalizer once none is left."""
        from kubeling.apiserver.registry import DeleteOptions

        await asyncio.sleep(0)
        registry = self.server.registry
        spec = obj.get("spec") or {}
        prefix = f"/registry/{spec.get('group')}/{(spec.get('names') or {}).get('plural')}/"
        res = next((self.catalogue.lookup(i.group, i.version, i.plural) for i in CUSTOM.values()
                    if i.crd_name == obj["metadata"]["name"]), None)
        page = await self.server.store.list(prefix)
        for item in page.items:
            m = item["metadata"]
            if m.get("deletionTimestamp"):
                continue
            try:
                if res is not None:
                    await registry.delete(res, m.get("namespace"), m["name"], DeleteOptions())
                else:
                    key = f"{prefix}{m['namespace'] + '/' if m.get('namespace') else ''}{m['name']}"
                    await self.server.store.delete(key)
            except Exception:  # noqa: BLE001 - gone already or conflicting: the next pass sees it
                log.debug("cleanup of %s/%s", prefix, m.get("name"), exc_info=True)
        if (await self.server.store.list(prefix)).items:
            return  # objects with finalizers remain; their deletion re-schedules this
        crd_res = self.catalogue.lookup(_CRD_GROUP, "v1", _CRD_PLURAL)

        def drop(o: Obj) -> Obj:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f != crd.CRD_FINALIZER]
            return o

        with contextlib.suppress(errors.StatusError):
            await registry.guaranteed_update(crd_res, None, obj["metadata"]["name"], drop)

    async def load(self) -> None:
        """Serve every stored CRD (start-up, before /readyz turns ready)."""
        res = self.catalogue.lookup(_CRD_GROUP, "v1", _CRD_PLURAL)
        if res is None:
            return
        page = await self.server.store.list(self.server.registry.prefix(res, None))
        for obj in page.items:
            try:
                self.register(obj)
            except Exception:  # noqa: BLE001 - one broken CRD must not keep the server down
                log.exception("cannot serve CRD %s", obj["metadata"].get("name"))
            if obj["metadata"].get("deletionTimestamp"):
                self._schedule_cleanup(obj)


def _deprecation_hook(controller: CrdController) -> Callable[[Any, web.StreamResponse], None]:
    """The server's response hook adding upstream's Warning header to answers about deprecated
    custom versions (a hook, not a middleware of its own: one coroutine frame less per request)."""

    def add_deprecation_warning(request: Any, resp: web.StreamResponse) -> None:
        if not controller.serves_deprecated:
            return  # runs on every request: nothing to look up while no served version is deprecated
        info = custom_for(request.get(requestkeys.RESOURCE))
        if info is not None and info.deprecated and not resp.prepared:
            resp.headers.add("Warning", f'299 - "{info.warning()}"')

    return add_deprecation_warning


class ApiExtensions:
    """What ``install`` hands back to the server: OpenAPI with CRDs, and the CRD controller."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.controller = CrdController(server)

    def openapi_v2(self) -> bytes:
        from kubeling.apiextensions import openapi

        return openapi.openapi_v2(self.server.catalogue)

    def openapi_v3_index(self) -> dict[str, Any]:
        from kubeling.apiextensions import openapi

        return openapi.openapi_v3_index(self.server.catalogue)

    def openapi_v3_doc(self, path: str) -> bytes | None:
        from kubeling.apiextensions import openapi

        return openapi.openapi_v3_doc(self.server.catalogue, path)

    def openapi_v3_hash(self, path: str) -> str | None:
        from kubeling.api.openapi import _hash

        body = self.openapi_v3_doc(path)
        return _hash(body) if body is not None else None


def install(server: Any) -> ApiExtensions:
    """Wire CRDs and admission webhooks into a freshly built ``ApiServer`` (before it starts)."""
    from kubeling.apiserver.webhooks import Webhooks

    ext = ApiExtensions(server)
    reg = server.registry
    reg.schema = SchemaDispatch(reg.schema)
    reg.defaults = DefaultsDispatch(reg.defaults)
    reg.strategies = StrategyDispatch(reg.strategies, server.catalogue)
    reg.admission = AdmissionChain(reg.admission, Webhooks(reg, server.catalogue))
    server.tables = TablesDispatch(server.tables)
    server.selectors = SelectorsDispatch(server.selectors)
    reg.selectors = server.selectors
    reg.after_write.append(ext.controller.after_write)
    reg.convert = convert
    reg.may_convert = lambda resource: _custom(resource) is not None
    server.handlers.register_subresource("scale", _scale_handler(server), applies_to=_is_custom)
    server.response_hooks.append(_deprecation_hook(ext.controller))
    server.startup_hooks.append(ext.controller.load)
    return ext
