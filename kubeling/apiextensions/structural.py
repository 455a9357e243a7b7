"""Structural-schema semantics for custom resources: pruning, defaulting and validation.

A CRD version's ``openAPIV3Schema`` is applied to every object of that version as the
apiextensions-apiserver does: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), ``default`` values fill missing fields, and the
value is validated with kube-openapi's messages ("spec.replicas in body must be of type
integer") and field paths, plus the list/map markers (``x-kubernetes-list-type`` set/map)
and ``x-kubernetes-int-or-string`` / ``x-kubernetes-embedded-resource``.
Schemas stay the plain dicts of the CRD; nothing is compiled but regexes (cached).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import re
import uuid
from functools import cache
from typing import Any

from kubeling.api.errors import FieldError, duplicate, invalid, required, unsupported

Schema = dict[str, Any]
_META_KEYS = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---- pruning ---------------------------------------------------------------------------------


def prune(schema: Schema, obj: Any, *, root: bool = True) -> list[str]:
    """Drop fields the schema does not declare, in place; returns their paths (for Strict/Warn)."""
    unknown: list[str] = []
    _prune(schema, obj, "", unknown, root=root)
    return unknown


def _prune(s: Schema, value: Any, path: str, out: list[str], *, root: bool = False) -> None:
    if isinstance(value, dict):
        props = s.get("properties")
        addl = s.get("additionalProperties")
        keep_meta = root or s.get("x-kubernetes-embedded-resource")
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            child = (props or {}).get(key)
            if child is None and isinstance(addl, dict):
                child = addl
            if child is None:
                if keep_meta and key in _META_KEYS:
                    if key == "metadata" and not root and isinstance(value[key], dict):
                        _prune_embedded_meta(value[key], _join(path, key), out)
                    continue
                if preserve or addl is True:
                    continue
                out.append(_join(path, key))
                del value[key]
                continue
            if child is not None:
                _prune(child, value[key], _join(path, key), out)
    elif isinstance(value, list):
        items = s.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _prune(items, v, f"{path}[{i}]", out)


_EMBEDDED_META = {"name", "namespace", "labels", "annotations", "generateName", "finalizers",
                  "ownerReferences", "uid", "resourceVersion", "creationTimestamp", "generation"}


def _prune_embedded_meta(meta: dict[str, Any], path: str, out: list[str]) -> None:
    for key in list(meta):
        if key not in _EMBEDDED_META:
            out.append(_join(path, key))
            del meta[key]


# ---- defaulting ------------------------------------------------------------------------------


def apply_defaults(schema: Schema, value: Any) -> None:
    """Fill ``default`` values for missing (or null, non-nullable) fields, in place, top-down."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, child in props.items():
            if not isinstance(child, dict):
                continue
            if "default" in child and (key not in value or (value[key] is None and not child.get("nullable"))):
                value[key] = copy.deepcopy(child["default"])
            elif key in value and value[key] is None and not child.get("nullable"):
                del value[key]  # upstream drops nulls of non-nullable fields without a default
            if key in value:
                apply_defaults(child, value[key])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key in list(value):
                if key not in props:
                    apply_defaults(addl, value[key])
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for v in value:
                apply_defaults(items, v)


# ---- validation ------------------------------------------------------------------------------


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _is_type(v: Any, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return True


@cache
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _check_format(fmt: str, v: str) -> bool:  # noqa: PLR0911 - one branch per format
    try:
        if fmt == "date-time":
            dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            return "T" in v or " " in v
        if fmt == "date":
            dt.date.fromisoformat(v)
            return True
        if fmt == "uuid":
            uuid.UUID(v)
            return len(v) == 36
        if fmt == "byte":
            base64.b64decode(v, validate=True)
            return True
        if fmt == "ipv4":
            return isinstance(ipaddress.ip_address(v), ipaddress.IPv4Address)
        if fmt == "ipv6":
            return isinstance(ipaddress.ip_address(v), ipaddress.IPv6Address)
        if fmt == "cidr":
            ipaddress.ip_network(v, strict=False)
            return "/" in v
        if fmt == "mac":
            return bool(re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", v))
        if fmt == "hostname":
            return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", v,
                                     re.IGNORECASE)) and len(v) <= 253
        if fmt == "email":
            return bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v))
        if fmt in ("uri", "url"):
            return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", v))
        if fmt == "duration":
            return bool(re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", v))
    except ValueError:
        return False
    return True  # unknown formats are not checked, as upstream


class Validator:
    """Collects field errors for one value against one schema (kube-openapi's messages)."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def bad(self, path: str, value: Any, detail: str) -> None:
        self.errors.append(invalid(path, value, detail))

    def validate(self, s: Schema, v: Any, path: str, *, root: bool = False) -> None:
        if v is None:
            if s.get("nullable"):
                return
            t = s.get("type")
            if t and not s.get("x-kubernetes-int-or-string"):
                self.bad(path, "null", f'{path} in body must be of type {t}: "null"')
            return
        if s.get("x-kubernetes-int-or-string"):
            if not (isinstance(v, str) or _is_type(v, "integer")):
                self.bad(path, _type_name(v), f'{path} in body must be of type integer,string: "{_type_name(v)}"')
                return
        else:
            t = s.get("type")
            if t and not _is_type(v, t):
                self.bad(path, _type_name(v), f'{path} in body must be of type {t}: "{_type_name(v)}"')
                return
        if "enum" in s and isinstance(s["enum"], list) and v not in s["enum"]:
            self.errors.append(unsupported(path, v, [_enum_str(e) for e in s["enum"]]))
        if isinstance(v, str):
            self._string(s, v, path)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            self._number(s, v, path)
        elif isinstance(v, list):
            self._array(s, v, path)
        elif isinstance(v, dict):
            self._object(s, v, path, root=root)
        for sub in ("allOf",):
            for alt in s.get(sub) or []:
                self.validate(alt, v, path)
        for key in ("anyOf", "oneOf"):
            alts = s.get(key)
            if alts:
                ok = [not _errors_for(alt, v, path) for alt in alts]
                if key == "anyOf" and not any(ok):
                    self.bad(path, v, f"{path} in body must validate at least one schema (anyOf)")
                if key == "oneOf" and sum(ok) != 1:
                    self.bad(path, v, f"{path} in body must validate one and only one schema (oneOf)")
        if isinstance(s.get("not"), dict) and not _errors_for(s["not"], v, path):
            self.bad(path, v, f"{path} in body must not validate the schema (not)")

    def _string(self, s: Schema, v: str, path: str) -> None:
        if "maxLength" in s and len(v) > s["maxLength"]:
            self.errors.append(FieldError("Too long", path, f"may not be more than {s['maxLength']} bytes"))
        if "minLength" in s and len(v) < s["minLength"]:
            self.bad(path, v, f"{path} in body should be at least {s['minLength']} chars long")
        pat = s.get("pattern")
        if pat:
            rx = _regex(pat)
            if rx is not None and not rx.search(v):
                self.bad(path, v, f"{path} in body should match '{pat}'")
        fmt = s.get("format")
        if fmt and not s.get("x-kubernetes-int-or-string") and not _check_format(fmt, v):
            self.bad(path, v, f'{path} in body must be of type {fmt}: "{v}"')

    def _number(self, s: Schema, v: float, path: str) -> None:
        if "maximum" in s:
            if s.get("exclusiveMaximum") and v >= s["maximum"]:
                self.bad(path, v, f"{path} in body should be less than {_num(s['maximum'])}")
            elif v > s["maximum"]:
                self.bad(path, v, f"{path} in body should be less than or equal to {_num(s['maximum'])}")
        if "minimum" in s:
            if s.get("exclusiveMinimum") and v <= s["minimum"]:
                self.bad(path, v, f"{path} in body should be greater than {_num(s['minimum'])}")
            elif v < s["minimum"]:
                self.bad(path, v, f"{path} in body should be greater than or equal to {_num(s['minimum'])}")
        m = s.get("multipleOf")
        if m and (v / m) != int(v / m):
            self.bad(path, v, f"{path} in body should be a multiple of {_num(m)}")
        fmt = s.get("format")
        if fmt == "int32" and isinstance(v, int) and not -(2**31) <= v < 2**31:
            self.bad(path, v, f"{path} in body must be of type int32: \"{v}\"")

    def _array(self, s: Schema, v: list[Any], path: str) -> None:
        if "maxItems" in s and len(v) > s["maxItems"]:
            self.errors.append(FieldError("Too many", path, f"{len(v)}: must have at most {s['maxItems']} items"))
        if "minItems" in s and len(v) < s["minItems"]:
            self.bad(path, len(v), f"{path} in body should have at least {s['minItems']} items")
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(v):
                self.validate(items, item, f"{path}[{i}]")
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set" or s.get("uniqueItems"):
            seen: list[Any] = []
            for i, item in enumerate(v):
                if item in seen:
                    self.errors.append(duplicate(f"{path}[{i}]", item))
                else:
                    seen.append(item)
        elif list_type == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            seen_keys: set[str] = set()
            for i, item in enumerate(v):
                if not isinstance(item, dict):
                    continue
                k = repr([item.get(key) for key in keys])
                if k in seen_keys:
                    self.errors.append(duplicate(f"{path}[{i}]", {key: item.get(key) for key in keys if key in item}))
                seen_keys.add(k)

    def _object(self, s: Schema, v: dict[str, Any], path: str, *, root: bool) -> None:
        props = s.get("properties") or {}
        for name in s.get("required") or []:
            if name not in v:
                self.errors.append(required(_join(path, name)))
        if "maxProperties" in s and len(v) > s["maxProperties"]:
            self.errors.append(FieldError("Too many", path, f"{len(v)}: must have at most {s['maxProperties']} items"))
        if "minProperties" in s and len(v) < s["minProperties"]:
            self.bad(path, len(v), f"{path} in body should have at least {s['minProperties']} properties")
        addl = s.get("additionalProperties")
        for key, value in v.items():
            if root and key in _META_KEYS:
                continue
            child = props.get(key)
            if child is None and isinstance(addl, dict):
                child = addl
            if isinstance(child, dict):
                self.validate(child, value, _join(path, key))
        if s.get("x-kubernetes-embedded-resource") and not root:
            for key in ("apiVersion", "kind"):
                if not v.get(key) and not s.get("x-kubernetes-preserve-unknown-fields"):
                    self.errors.append(required(_join(path, key), "must not be empty"))


def _errors_for(s: Schema, v: Any, path: str) -> list[FieldError]:
    sub = Validator()
    sub.validate(s, v, path)
    return sub.errors


def _num(n: float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


def _enum_str(e: Any) -> str:
    return e if isinstance(e, str) else str(e).lower() if isinstance(e, bool) else str(e)


def validate(schema: Schema, obj: dict[str, Any]) -> list[FieldError]:
    """Validate a whole custom object (root schema; apiVersion/kind/metadata are the server's)."""
    v = Validator()
    v.validate(schema, obj, "", root=True)
    # root-level errors of an empty path read better as <nil> upstream; ours keep the field name
    return v.errors


def validate_status_only(schema: Schema, obj: dict[str, Any]) -> list[FieldError]:
    st = (schema.get("properties") or {}).get("status")
    if not isinstance(st, dict) or "status" not in obj:
        return []
    v = Validator()
    v.validate(st, obj["status"], "status")
    return v.errors


def child_schema(schema: Schema, key: str) -> Schema | None:
    """The schema of field ``key`` under ``schema`` (properties, then additionalProperties)."""
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    addl = schema.get("additionalProperties")
    return addl if isinstance(addl, dict) else None
