"""OpenAPI v2 and v3 documents that include served CRD versions (for ``kubectl explain`` and
kubectl's server-side field-validation check).

The built-in documents stay as ``kubeling.api.openapi`` builds them; CRD group-versions get
documents of their own (paths from the same path builder, the CRD schema under upstream's
definition name with ``apiVersion``/``kind``/``metadata`` filled in), and ``/openapi/v2`` is the
built-in document merged with every CRD's paths and definitions. Everything is cached per
catalogue generation.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from kubeling.api import openapi as base
from kubeling.api.catalogue import Catalogue, Resource
from kubeling.apiextensions.crd import CUSTOM, CustomVersion

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_SCALE = "io.k8s.api.autoscaling.v1.Scale"
_cache: dict[tuple[int, str], Any] = {}


def _custom(catalogue: Catalogue) -> list[tuple[Resource, CustomVersion]]:
    out = []
    for r in catalogue.all():
        info = CUSTOM.get((r.group, r.version, r.plural))
        if info is not None:
            out.append((r, info))
    return out


def _schema(info: CustomVersion, ref_prefix: str, v3: bool) -> dict[str, Any]:
    s = copy.deepcopy(info.schema)
    s.pop("x-kubernetes-validations", None)
    props = s.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": (
        "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
        "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")}
    props["kind"] = {"type": "string", "description": (
        "Kind is a string value representing the REST resource this object represents. Servers may infer this "
        "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")}
    meta_ref = {"$ref": ref_prefix + _OBJECT_META}
    props["metadata"] = {"allOf": [meta_ref], "description": "Standard object's metadata. More info: "
                         "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
                         "#metadata"} if v3 else {**meta_ref, "description": "Standard object's metadata."}
    s["x-kubernetes-group-version-kind"] = [{"group": info.group, "kind": info.kind, "version": info.version}]
    return s


def _list_schema(info: CustomVersion, ref_prefix: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"], "description": f"{info.kind}List is a list of {info.kind}",
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "items": {"type": "array", "items": {"$ref": ref_prefix + info.definition_name}},
                           "metadata": {"$ref": ref_prefix + _LIST_META}},
            "x-kubernetes-group-version-kind": [{"group": info.group, "kind": info.kind + "List",
                                                 "version": info.version}]}


def _fill(paths: dict[str, Any], defs: dict[str, Any], customs: list[tuple[Resource, CustomVersion]], *,
          v3: bool) -> None:
    builder = base._PathBuilder(v3=v3)
    gvk = dict(builder.gvk_defs)
    for r, info in customs:
        gvk[(r.group, r.version, r.kind)] = info.definition_name
        gvk[(r.group, r.version, r.list_kind)] = info.definition_name + "List"
    builder.gvk_defs = gvk
    for r, info in customs:
        builder.add_resource(paths, r)
        defs[info.definition_name] = _schema(info, builder.ref_prefix, v3)
        defs[info.definition_name + "List"] = _list_schema(info, builder.ref_prefix)
    roots = [base._STATUS, base._DELETE_OPTIONS, base._PATCH, _OBJECT_META, _LIST_META, _SCALE]
    all_defs = base._definitions(v3)
    for name in base._closure(roots):
        defs.setdefault(name, all_defs[name])


def openapi_v2(catalogue: Catalogue) -> bytes:
    key = (catalogue.generation, "v2")
    hit = _cache.get(key)
    if hit is not None:
        return hit
    body = base.openapi_v2()
    customs = _custom(catalogue)
    if customs:
        doc = orjson.loads(body)
        _fill(doc["paths"], doc["definitions"], customs, v3=False)
        doc["paths"] = dict(sorted(doc["paths"].items()))
        doc["definitions"] = dict(sorted(doc["definitions"].items()))
        body = orjson.dumps(doc)
    _remember(key, body)
    return body


def _remember(key: tuple[int, str], value: Any) -> None:
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = value


def _v3_docs(catalogue: Catalogue) -> dict[str, bytes]:
    key = (catalogue.generation, "v3")
    hit = _cache.get(key)
    if hit is not None:
        return hit
    by_gv: dict[str, list[tuple[Resource, CustomVersion]]] = {}
    for r, info in _custom(catalogue):
        by_gv.setdefault(f"apis/{r.group}/{r.version}", []).append((r, info))
    docs = {}
    for path, customs in by_gv.items():
        paths: dict[str, Any] = {}
        defs: dict[str, Any] = {}
        _fill(paths, defs, customs, v3=True)
        docs[path] = orjson.dumps({
            "openapi": "3.0.0", "info": dict(base._INFO), "paths": dict(sorted(paths.items())),
            "components": {"schemas": dict(sorted(defs.items())), "securitySchemes": {"BearerToken": base._BEARER}},
        })
    _remember(key, docs)
    return docs


def openapi_v3_index(catalogue: Catalogue) -> dict[str, Any]:
    index = copy.deepcopy(base.openapi_v3_index())
    for path, body in _v3_docs(catalogue).items():
        index["paths"][path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={base._hash(body)}"}
    return index


def openapi_v3_doc(catalogue: Catalogue, path: str) -> bytes | None:
    clean = path.split("?", 1)[0].strip("/").removeprefix("openapi/v3").strip("/")
    return _v3_docs(catalogue).get(clean) or base.openapi_v3_doc(path)
