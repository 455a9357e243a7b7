"""The OpenAPI documents kubectl reads: ``/openapi/v2`` and ``/openapi/v3`` (index + one per group-version).

kubectl 1.32 uses them for more than documentation:

* ``kubectl explain`` fetches ``/openapi/v3``, follows ``paths["apis/apps/v1"].serverRelativeURL``
  and looks up the schema whose ``x-kubernetes-group-version-kind`` names the kind in
  ``components.schemas``;
* ``kubectl create/apply/replace`` decide whether the server does strict field validation by
  looking, in the group-version document, for a PATCH operation tagged with the kind's
  ``x-kubernetes-group-version-kind`` that lists a ``fieldValidation`` query parameter
  (cli-runtime's queryParamVerifierV3); when it does, kubectl sends ``fieldValidation=Strict``
  instead of validating client side. CRD kinds fall back to checking the Namespace operation.

So each document carries real ``paths`` (collection, item and subresource operations with
their parameters) besides the schemas. The schemas come from kubernetes-validate's v1.32
files, a JSON-schema rendering of upstream's definitions, converted back: nullable
``type`` lists become one type, ``$ref`` points at ``#/definitions/`` (v2) or
``#/components/schemas/`` (v3, wrapped in ``allOf`` when it has siblings, as upstream),
and IntOrString/Quantity regain their ``string`` shapes. Documents are built once, lazily,
and kept as bytes. Only built-in group-versions are described; CRDs are not.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import orjson

from kubeling.api.catalogue import (
    KUBERNETES_VERSION,
    Catalogue,
    Resource,
    build_builtin_catalogue,
    gvk_definitions,
    load_definitions,
)

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_PATCH = _META + "Patch"

# The two definitions the JSON-schema rendering turns into oneOf: restore upstream's shapes.
_SPECIAL_DEFINITIONS: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
        "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, "
        "for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number, serialized as a string such as "
        '"100m", "1.5", "128Mi" or "1e3": an optionally signed decimal number followed by a binary SI '
        "suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal SI suffix (m, k, M, G, T, P, E) or a decimal exponent.",
        "type": "string",
    },
}

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_PRODUCES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")

# Query parameters: name -> (description, type)
_PARAMS: dict[str, tuple[str, str]] = {
    "pretty": ("If 'true', then the output is pretty printed.", "string"),
    "dryRun": (
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized "
        "dryRun directive will result in an error response and no further processing of the request. "
        "Valid values are: - All: all dry run stages will be processed",
        "string",
    ),
    "fieldManager": (
        "fieldManager is a name associated with the actor or entity that is making these changes. The value "
        "must be less than or 128 characters long, and only contain printable characters, as defined by "
        "https://golang.org/pkg/unicode/#IsPrint.",
        "string",
    ),
    "fieldValidation": (
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
        "containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown "
        "fields that are silently dropped from the object, and will ignore all but the last duplicate field "
        "that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a "
        "warning via the standard warning response header for each unknown field that is dropped from the "
        "object, and for each duplicate field that is encountered. The request will still succeed if there "
        "are no other errors, and will only persist the last of any duplicate fields. This is the default in "
        "v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be "
        "dropped from the object, or if any duplicate fields are present. The error returned from the server "
        "will contain all unknown and duplicate fields encountered.",
        "string",
    ),
    "force": (
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned "
        "by other people. Force flag must be unset for non-apply patch requests.",
        "boolean",
    ),
    "gracePeriodSeconds": (
        "The duration in seconds before the object should be deleted. Value must be non-negative integer. "
        "The value zero indicates delete immediately.",
        "integer",
    ),
    "propagationPolicy": (
        "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be "
        "set, but not both. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
        "string",
    ),
    "labelSelector": ("A selector to restrict the list of returned objects by their labels.", "string"),
    "fieldSelector": ("A selector to restrict the list of returned objects by their fields.", "string"),
    "limit": ("limit is a maximum number of responses to return for a list call.", "integer"),
    "continue": ("The continue option should be set when retrieving more results from the server.", "string"),
    "resourceVersion": ("resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
    "resourceVersionMatch": ("resourceVersionMatch determines how resourceVersion is applied to list calls.", "string"),
    "timeoutSeconds": ("Timeout for the list/watch call.", "integer"),
    "watch": ("Watch for changes to the described resources and return them as a stream of add, update, and "
              "remove notifications.", "boolean"),
    "allowWatchBookmarks": ("allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
    "sendInitialEvents": ("`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
}
_PATH_PARAMS = {
    "name": ("name of the object", "string"),
    "namespace": ("object name and auth scope, such as for teams and projects", "string"),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "propagationPolicy")


# ---- schema conversion -------------------------------------------------------------------------


def _convert(schema: Any, ref_prefix: str, v3: bool) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif key == "$ref":
            out["$ref"] = ref_prefix + value.rsplit("/", 1)[-1]
        elif key == "properties":
            out["properties"] = {name: _convert(s, ref_prefix, v3) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value, ref_prefix, v3)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [_convert(s, ref_prefix, v3) for s in value]
        else:
            out[key] = value
    if v3 and "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores siblings of $ref: upstream wraps the reference in allOf
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


# OpenAPI v3 describes them as a oneOf of their two JSON types (so explain prints <IntOrString>).
_V3_ONE_OF = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": ("integer", "string"),
    "io.k8s.apimachinery.pkg.api.resource.Quantity": ("number", "string"),
}


def _convert_definition(name: str, schema: dict[str, Any], ref_prefix: str, v3: bool) -> dict[str, Any]:
    if name in _SPECIAL_DEFINITIONS:
        out = dict(_SPECIAL_DEFINITIONS[name])
        if v3:
            del out["type"]
            out["oneOf"] = [{"type": t} for t in _V3_ONE_OF[name]]
        return out
    out = _convert(schema, ref_prefix, v3)
    if "x-kubernetes-group-version-kind" in schema:
        # kubernetes-validate pins apiVersion/kind with enums; upstream's documents don't
        for field in ("apiVersion", "kind"):
            prop = out.get("properties", {}).get(field)
            if prop:
                prop.pop("enum", None)
    return out


@cache
def _definitions(v3: bool) -> dict[str, dict[str, Any]]:
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    return {name: _convert_definition(name, s, prefix, v3) for name, s in load_definitions().items()}


def _closure(roots: list[str]) -> list[str]:
    """The definitions reachable from ``roots`` through ``$ref``, sorted by name."""
    defs = load_definitions()
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        todo: list[Any] = [defs[name]]
        while todo:
            node = todo.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    target = ref.rsplit("/", 1)[-1]
                    if target not in seen:
                        stack.append(target)
                todo.extend(node.values())
            elif isinstance(node, list):
                todo.extend(node)
    return sorted(seen)


def _roots(resources: list[Resource]) -> list[str]:
    gvk_defs = gvk_definitions()
    roots = [_STATUS, _DELETE_OPTIONS, _PATCH]
    for r in resources:
        for gvk in [(r.group, r.version, r.kind), (r.group, r.version, r.list_kind)] + [
            (s.group, s.version, s.kind) for s in r.subresources.values()
        ]:
            if gvk in gvk_defs:
                roots.append(gvk_defs[gvk])
    return roots


# ---- paths ------------------------------------------------------------------------------------


def _camel_group(group: str) -> str:
    if not group:
        return "Core"
    return "".join(p[:1].upper() + p[1:] for p in group.removesuffix(".k8s.io").split("."))


def _tag(group: str, version: str) -> str:
    g = _camel_group(group)
    return f"{g[:1].lower()}{g[1:]}_{version}"


class _PathBuilder:
    """Operations for one flavour (v2 or v3) of the document."""

    def __init__(self, v3: bool) -> None:
        self.v3 = v3
        self.ref_prefix = "#/components/schemas/" if v3 else "#/definitions/"
        self.gvk_defs = gvk_definitions()

    def _param(self, name: str, where: str = "query", *, required: bool = False) -> dict[str, Any]:
        desc, typ = _PATH_PARAMS[name] if where == "path" else _PARAMS[name]
        p: dict[str, Any] = {"name": name, "in": where, "description": desc}
        if required:
            p["required"] = True
        if self.v3:
            p["schema"] = {"type": typ, "uniqueItems": True}
        else:
            p["type"], p["uniqueItems"] = typ, True
        return p

    def _ref(self, definition: str | None) -> dict[str, Any]:
        return {"$ref": self.ref_prefix + definition} if definition else {"type": "string"}

    def _op(self, *, action: str, op_id: str, desc: str, tag: str, gvk: tuple[str, str, str],
            params: tuple[str, ...], body: str | None = None, body_types: tuple[str, ...] = ("*/*",),
            response: str | None, codes: tuple[str, ...] = ("200",)) -> dict[str, Any]:
        op: dict[str, Any] = {"tags": [tag], "description": desc, "operationId": op_id}
        parameters = [self._param(p) for p in params]
        resp_schema = self._ref(response)
        if self.v3:
            op["parameters"] = parameters
            if body is not None:
                op["requestBody"] = {
                    "content": {t: {"schema": self._ref(body)} for t in body_types},
                    "required": action != "delete",
                }
            content = {t: {"schema": resp_schema} for t in _PRODUCES}
            op["responses"] = {c: {"description": _CODE_TEXT[c], "content": content} for c in codes}
        else:
            if body is not None:
                parameters.insert(0, {"name": "body", "in": "body", "required": action != "delete",
                                      "schema": self._ref(body)})
            op["consumes"] = list(body_types)
            op["produces"] = list(_PRODUCES)
            op["schemes"] = ["https"]
            op["parameters"] = parameters
            op["responses"] = {c: {"description": _CODE_TEXT[c], "schema": resp_schema} for c in codes}
        op["responses"]["401"] = {"description": "Unauthorized"}
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = {"group": gvk[0], "kind": gvk[2], "version": gvk[1]}
        return op

    def add_resource(self, paths: dict[str, Any], r: Resource) -> None:
        g, v = r.group, r.version
        tag, gv = _tag(g, v), _camel_group(g) + v.capitalize()
        ns = "Namespaced" if r.namespaced else ""
        kind_def = self.gvk_defs.get((g, v, r.kind))
        list_def = self.gvk_defs.get((g, v, r.list_kind))
        gvk = (g, v, r.kind)
        base = f"{r.path_prefix}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{r.path_prefix}/{r.plural}"
        scope_params = [self._param("namespace", "path", required=True)] if r.namespaced else []
        verbs = set(r.verbs)

        coll: dict[str, Any] = {}
        if "list" in verbs:
            coll["get"] = self._op(action="list", op_id=f"list{gv}{ns}{r.kind}", desc=f"list or watch objects of kind {r.kind}",
                                   tag=tag, gvk=gvk, params=_LIST_PARAMS, response=list_def)
        if "create" in verbs:
            coll["post"] = self._op(action="post", op_id=f"create{gv}{ns}{r.kind}", desc=f"create a {r.kind}", tag=tag,
                                    gvk=gvk, params=_WRITE_PARAMS, body=kind_def, response=kind_def,
                                    codes=("200", "201", "202"))
        if "deletecollection" in verbs:
            coll["delete"] = self._op(action="deletecollection", op_id=f"delete{gv}Collection{ns}{r.kind}",
                                      desc=f"delete collection of {r.kind}", tag=tag, gvk=gvk,
                                      params=_DELETE_PARAMS + _LIST_PARAMS[:-1], body=_DELETE_OPTIONS, response=_STATUS)
        if coll:
            paths[base] = {**coll, "parameters": [*scope_params, self._param("pretty")]}
        if r.namespaced and "list" in verbs:
            paths[f"{r.path_prefix}/{r.plural}"] = {
                "get": self._op(action="list", op_id=f"list{gv}{r.kind}ForAllNamespaces",
                                desc=f"list or watch objects of kind {r.kind}", tag=tag, gvk=gvk,
                                params=_LIST_PARAMS, response=list_def),
                "parameters": [self._param("pretty")],
            }

        item_params = [self._param("name", "path", required=True), *scope_params, self._param("pretty")]
        item = self._item_ops(r.kind, gv, ns, tag, gvk, verbs, kind_def, suffix="")
        if item:
            paths[f"{base}/{{name}}"] = {**item, "parameters": item_params}
        for name, sub in r.subresources.items():
            sub_def = self.gvk_defs.get((sub.group, sub.version, sub.kind))
            sub_gvk = (sub.group, sub.version, sub.kind)
            suffix = name[:1].upper() + name[1:]
            if sub.kind.endswith("Options"):  # connect subresources answer streams
                ops = {
                    _HTTP[verb]: self._op(action="connect", op_id=f"connect{gv}{_HTTP[verb].capitalize()}{ns}{r.kind}{suffix}",
                                          desc=f"connect {_HTTP[verb].upper()} requests to {name} of {r.kind}", tag=tag,
                                          gvk=sub_gvk, params=(), response=None)
                    for verb in sub.verbs
                }
            elif name == "log":
                ops = {"get": self._op(action="get", op_id=f"read{gv}{ns}{r.kind}Log", desc=f"read log of the specified {r.kind}",
                                       tag=tag, gvk=sub_gvk, params=(), response=None)}
            else:
                ops = self._item_ops(r.kind, gv, ns, tag, sub_gvk, set(sub.verbs), sub_def, suffix=suffix, sub=name)
            if ops:
                paths[f"{base}/{{name}}/{name}"] = {**ops, "parameters": item_params}

    def _item_ops(self, kind: str, gv: str, ns: str, tag: str, gvk: tuple[str, str, str], verbs: set[str],
                  schema: str | None, *, suffix: str, sub: str = "") -> dict[str, Any]:
        what = f"{sub} of the specified {kind}" if sub else f"the specified {kind}"
        ops: dict[str, Any] = {}
        if "get" in verbs:
            ops["get"] = self._op(action="get", op_id=f"read{gv}{ns}{kind}{suffix}", desc=f"read {what}", tag=tag,
                                  gvk=gvk, params=(), response=schema)
        if "update" in verbs:
            ops["put"] = self._op(action="put", op_id=f"replace{gv}{ns}{kind}{suffix}", desc=f"replace {what}", tag=tag,
                                  gvk=gvk, params=_WRITE_PARAMS, body=schema, response=schema, codes=("200", "201"))
        if "patch" in verbs:
            ops["patch"] = self._op(action="patch", op_id=f"patch{gv}{ns}{kind}{suffix}", desc=f"partially update {what}",
                                    tag=tag, gvk=gvk, params=(*_WRITE_PARAMS, "force"), body=_PATCH,
                                    body_types=_PATCH_TYPES, response=schema, codes=("200", "201"))
        if "delete" in verbs:
            ops["delete"] = self._op(action="delete", op_id=f"delete{gv}{ns}{kind}{suffix}", desc=f"delete {what}", tag=tag,
                                     gvk=gvk, params=_DELETE_PARAMS, body=_DELETE_OPTIONS, response=_STATUS,
                                     codes=("200", "202"))
        if sub and "create" in verbs:  # an object's own create lives on the collection path
            ops["post"] = self._op(action="post", op_id=f"create{gv}{ns}{kind}{suffix}", desc=f"create {what}", tag=tag,
                                   gvk=gvk, params=_WRITE_PARAMS, body=schema, response=schema,
                                   codes=("200", "201", "202"))
        return ops


_HTTP = {"get": "get", "create": "post", "update": "put", "patch": "patch", "delete": "delete"}
_CODE_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}
_INFO = {"title": "Kubernetes", "version": KUBERNETES_VERSION}
_BEARER = {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}


# ---- documents --------------------------------------------------------------------------------


@cache
def _builtin() -> Catalogue:
    # the documents describe built-ins only, so they never change after startup
    return build_builtin_catalogue()


def _group_versions(catalogue: Catalogue) -> list[tuple[str, str]]:
    return [(g, v) for g in ["", *catalogue.groups()] for v in catalogue.versions(g)]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def build_v2(catalogue: Catalogue) -> dict[str, Any]:
    builder = _PathBuilder(v3=False)
    paths: dict[str, Any] = {}
    resources = catalogue.all()
    for r in resources:
        builder.add_resource(paths, r)
    defs = _definitions(False)
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "paths": dict(sorted(paths.items())),
        "definitions": {name: defs[name] for name in _closure(_roots(resources))},
        "securityDefinitions": {"BearerToken": _BEARER},
        "security": [{"BearerToken": []}],
    }


def build_v3(catalogue: Catalogue, group: str, version: str) -> dict[str, Any]:
    builder = _PathBuilder(v3=True)
    paths: dict[str, Any] = {}
    resources = catalogue.resources_in(group, version)
    for r in resources:
        builder.add_resource(paths, r)
    defs = _definitions(True)
    return {
        "openapi": "3.0.0",
        "info": dict(_INFO),
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {name: defs[name] for name in _closure(_roots(resources))},
            "securitySchemes": {"BearerToken": _BEARER},
        },
    }


@cache
def openapi_v2() -> bytes:
    """The body of ``GET /openapi/v2`` (JSON; kubectl's protobuf request should get 406)."""
    return orjson.dumps(build_v2(_builtin()))


@cache
def _v3_docs() -> dict[str, bytes]:
    cat = _builtin()
    return {_gv_path(g, v): orjson.dumps(build_v3(cat, g, v)) for g, v in _group_versions(cat)}


def _hash(body: bytes) -> str:
    # upstream: uppercase hex of sha512 over the document, used as an immutable cache key
    return hashlib.sha512(body).hexdigest().upper()


@cache
def _v3_index() -> dict[str, Any]:
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(body)}"}
            for path, body in _v3_docs().items()
        }
    }


def openapi_v3_index() -> dict[str, Any]:
    """The body of ``GET /openapi/v3``: group-version path -> ``serverRelativeURL`` with a hash."""
    return _v3_index()


def openapi_v3_doc(path: str) -> bytes | None:
    """The body of ``GET /openapi/v3/<path>`` (``api/v1``, ``apis/apps/v1``), None when unknown (404).

    Accepts the path with or without a leading ``/openapi/v3/`` and ignores a ``?hash=`` query.
    """
    path = path.split("?", 1)[0].strip("/").removeprefix("openapi/v3").strip("/")
    return _v3_docs().get(path)


def openapi_v3_hash(path: str) -> str | None:
    """The hash the index advertises for ``path`` (serve with ``Cache-Control: immutable`` when it matches)."""
    body = openapi_v3_doc(path)
    return _hash(body) if body is not None else None
