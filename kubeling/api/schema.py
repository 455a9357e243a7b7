"""Structural validation of built-in kinds against the upstream v1.32 OpenAPI schema.

Upstream checks the shape of a request body while decoding it into Go structs:
wrong types fail with encoding/json's message, unknown fields fail (Strict), warn
(Warn) or are silently dropped (Ignore). We compile the definitions shipped with
kubernetes-validate into small node trees once and walk objects with them; a
generic JSON-schema engine would be slower here and could not produce Go's
messages and field paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from kubeling.api import quantity
from kubeling.api.errors import FieldError, StatusError, bad_request

SCHEMA_DIR = "v1.32.0-local-strict"

# node kinds
OBJ, MAP, ARR, STR, INT, NUM, BOOL, INTSTR, QTY, TIME, ANY = range(11)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class Node:
    """One compiled schema: ``kind`` plus children; ``go`` is the Go type name for messages."""

    __slots__ = ("kind", "go", "struct", "props", "meta", "item", "bits", "strict", "required", "check",
                 "native", "nulls", "walks")

    def __init__(self, kind: int, go: str = "") -> None:
        self.kind = kind
        self.go = go
        self.struct = ""  # Go struct name (objects) for "Go struct field X.path"
        self.props: dict[str, Node] = {}
        self.meta: dict[str, PatchInfo] = {}
        self.item: Node | None = None  # array item / map value
        self.bits = 64
        self.strict = True
        self.required: tuple[str, ...] = ()  # Go fields without omitempty
        self.check: Callable[[Any], bool] | None = None  # the compiled fast check (_checker)
        self.native: Callable[[Any], bool] | None = None  # the native one, of root nodes (_native)
        self.nulls: Callable[[Any], bool] = _never  # its second chance, for bodies with nulls (_native)
        self.walks = 0  # validations walked before the fast checks are compiled (see COMPILE_AFTER)

    def child(self, name: str) -> Node | None:
        """The node of a property (objects) or of the items/values (arrays, maps)."""
        if self.kind == OBJ:
            return self.props.get(name)
        return self.item


@dataclass(frozen=True, slots=True)
class PatchInfo:
    """Strategic-merge metadata of one property (from x-kubernetes-patch-* / list-type)."""

    strategy: str = ""
    merge_key: str = ""
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()
    map_type: str = ""


_NO_PATCH = PatchInfo()


def _schema_path() -> Path:
    from kubeling.api.catalogue import schema_dir  # finds the package without importing it (jsonschema)

    return schema_dir().parent / SCHEMA_DIR / "_definitions.json"


def _go_name(defname: str) -> tuple[str, str]:
    """('v1.DaemonSetSpec', 'DaemonSetSpec') from 'io.k8s.api.apps.v1.DaemonSetSpec'."""
    parts = defname.split(".")
    return f"{parts[-2]}.{parts[-1]}", parts[-1]


class _Compiler:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.nodes: dict[str, Node] = {}
        self.gvk: dict[tuple[str, str, str], str] = {}

    def run(self) -> None:
        """Index the kinds; definitions are compiled on first use (``node``): a process compiles
        the few dozen its requests touch, not all ~700 of them at start-up."""
        for name, d in self.defs.items():
            for g in d.get("x-kubernetes-group-version-kind") or []:
                self.gvk.setdefault((g.get("group", ""), g["version"], g["kind"]), name)

    def node(self, name: str) -> Node | None:
        """The compiled node of a definition (None for an unknown name), compiling it and what it
        refers to now if needed; a node is registered before it is filled, so cycles resolve."""
        node = self.nodes.get(name)
        if node is None:
            d = self.defs.get(name)
            if d is None:
                return None
            node = self.nodes[name] = Node(self._kind_of(name, d))
            self._fill(node, d, name)
        return node

    @staticmethod
    def _types(d: dict[str, Any]) -> list[str]:
        t = d.get("type")
        if t is None:
            return []
        return [x for x in (t if isinstance(t, list) else [t]) if x != "null"]

    def _kind_of(self, name: str, d: dict[str, Any]) -> int:
        if name.endswith("util.intstr.IntOrString"):
            return INTSTR
        if name.endswith("api.resource.Quantity"):
            return QTY
        if d.get("format") == "date-time":
            return TIME
        return self._prim(d)

    def _prim(self, d: dict[str, Any]) -> int:
        if "$ref" in d:
            return ANY
        if d.get("x-kubernetes-int-or-string"):
            return INTSTR
        types = self._types(d)
        if len(types) != 1:
            return ANY
        t = types[0]
        if t == "object":
            if d.get("properties"):
                return OBJ
            ap = d.get("additionalProperties")
            return MAP if isinstance(ap, dict) else ANY
        return {"array": ARR, "string": STR, "integer": INT, "number": NUM, "boolean": BOOL}.get(t, ANY)

    def _fill(self, node: Node, d: dict[str, Any], defname: str) -> None:
        if node.kind == OBJ:
            node.go, node.struct = _go_name(defname)
            node.strict = d.get("additionalProperties") is False
            node.required = tuple(d.get("required") or ())
            for pname, p in d["properties"].items():
                node.props[pname] = self._prop(p)
                info = PatchInfo(p.get("x-kubernetes-patch-strategy", ""),
                                 p.get("x-kubernetes-patch-merge-key", ""),
                                 p.get("x-kubernetes-list-type", ""),
                                 tuple(p.get("x-kubernetes-list-map-keys") or ()),
                                 p.get("x-kubernetes-map-type", ""))
                if info != _NO_PATCH:
                    node.meta[pname] = info
        else:
            self._fill_plain(node, d)
            if node.kind in (INTSTR, QTY, TIME):
                node.go = {INTSTR: "intstr.IntOrString", QTY: "resource.Quantity", TIME: "v1.Time"}[node.kind]
            elif node.kind == ANY and not node.go:
                node.go = _go_name(defname)[0]

    def _prop(self, p: dict[str, Any]) -> Node:
        ref = p.get("$ref")
        if ref:
            node = self.node(ref.rsplit("/", 1)[-1])
            if node is None:
                raise KeyError(ref)
            return node
        node = Node(self._kind_of("", p))
        self._fill_plain(node, p)
        return node

    def _fill_plain(self, node: Node, d: dict[str, Any]) -> None:
        k = node.kind
        if k == INT:
            fmt = d.get("format", "int64")
            node.go = fmt if fmt in ("int32", "int64") else "int64"
            node.bits = 32 if fmt == "int32" else 64
        elif k == NUM:
            node.go = "float64"
        elif k == STR:
            node.go = "string"
        elif k == BOOL:
            node.go = "bool"
        elif k == ARR:
            node.item = self._prop(d.get("items") or {})
            node.go = "[]" + _elem_go(node.item)
        elif k == MAP:
            node.item = self._prop(d["additionalProperties"])
            node.go = ("v1.ResourceList" if node.item.kind == QTY
                       else "map[string]" + _elem_go(node.item))
        elif k == OBJ:  # inline object schema (not a definition)
            node.go = node.struct = "struct"
            node.strict = d.get("additionalProperties") is False
            for pname, p in d["properties"].items():
                node.props[pname] = self._prop(p)


def _elem_go(n: Node) -> str:
    return n.go or "interface {}"


@cache
def _compiled() -> _Compiler:
    from kubeling.api import kubeling_kinds  # kubeling's own kinds (RolloutPlan), strict like the rest

    defs = orjson.loads(_schema_path().read_bytes())["$defs"] | kubeling_kinds.definitions(strict=True)
    c = _Compiler(defs)
    c.run()
    return c


def definition_for(resource: Any) -> str | None:
    """The OpenAPI definition name of a resource (Resource, duck-typed object or GVK tuple)."""
    if isinstance(resource, tuple):
        group, version, kind = resource
        ref = None
    else:
        ref = getattr(resource, "schema_ref", None)
        group, version, kind = resource.group, resource.version, resource.kind
    c = _compiled()
    if ref and ref in c.defs:
        return ref
    return c.gvk.get((group, version, kind))


# id(resource) -> (resource, its root node): catalogue rows are immutable and long-lived, and every
# write asks; the row is kept in the entry so that its id cannot be reused by another object
_ROOTS: dict[int, tuple[Any, Node | None]] = {}


def root_node(resource: Any) -> Node | None:
    hit = _ROOTS.get(id(resource))
    if hit is not None and hit[0] is resource:
        return hit[1]
    name = definition_for(resource)
    node = _compiled().node(name) if name else None
    if not isinstance(resource, tuple):  # tuples are made per call: nothing to gain
        if len(_ROOTS) >= 4096:
            _ROOTS.clear()
        _ROOTS[id(resource)] = (resource, node)
    return node


def node_for_definition(name: str) -> Node | None:
    return _compiled().node(name)


def strategic_merge_info(resource: Any) -> Node | None:
    """Patch metadata for the strategic merge patch: walk with ``node.child(name)``
    and read ``node.meta.get(name)`` (a PatchInfo) on object nodes."""
    return root_node(resource)


# ---- the walker -------------------------------------------------------------------------

class _Walk:
    __slots__ = ("unknown", "first_error", "prune")

    def __init__(self, prune: bool) -> None:
        self.unknown: list[str] = []
        self.first_error: FieldError | None = None
        self.prune = prune

    def type_error(self, value: Any, node: Node, path: str, struct: str) -> None:
        if self.first_error is None:
            goval = _json_kind(value)
            gopath = _INDEX.sub("", path)
            msg = f"json: cannot unmarshal {goval} into Go struct field {struct}.{gopath} of type {node.go}"
            self.first_error = DecodeError("Invalid value", path, msg, value, True, message=msg)

    def hard_error(self, path: str, value: Any, msg: str) -> None:
        if self.first_error is None:
            self.first_error = DecodeError("Invalid value", path, msg, value, True, message=msg)

    def walk(self, node: Node, value: Any, path: str, struct: str) -> None:
        k = node.kind
        if value is None:
            return
        if k == OBJ:
            if type(value) is not dict:
                self.type_error(value, node, path, struct)
                return
            props = node.props
            drop: list[str] | None = None
            for key, v in value.items():
                child = props.get(key)
                if child is None:
                    if node.strict:
                        self.unknown.append(f"{path}.{key}" if path else key)
                        if self.prune:
                            (drop := drop or []).append(key)
                    continue
                if v is None:
                    (drop := drop or []).append(key)
                    continue
                ck = child.kind
                if ck == STR:
                    if type(v) is not str:
                        self.type_error(v, child, f"{path}.{key}" if path else key, node.struct)
                elif ck == ANY:
                    pass
                # valid scalars are settled here, without a call or a path; anything else is walked
                # (which records the error exactly as it would have)
                elif ck == INT:
                    if type(v) is not int or not _INT32[0] <= v <= _INT32[1]:
                        self.walk(child, v, f"{path}.{key}" if path else key, node.struct)
                elif ck == BOOL:
                    if type(v) is not bool:
                        self.walk(child, v, f"{path}.{key}" if path else key, node.struct)
                elif ck == TIME:
                    if type(v) is not str or v not in _VALID_TIMES:
                        self.walk(child, v, f"{path}.{key}" if path else key, node.struct)
                else:
                    self.walk(child, v, f"{path}.{key}" if path else key, node.struct)
            if drop:
                for key in drop:
                    del value[key]
        elif k == STR:
            if type(value) is not str:
                self.type_error(value, node, path, struct)
        elif k == ARR:
            if type(value) is not list:
                self.type_error(value, node, path, struct)
                return
            item = node.item
            if item is None or item.kind == ANY:
                return
            if item.kind == STR:
                for i, v in enumerate(value):
                    if type(v) is not str and v is not None:
                        self.type_error(v, item, f"{path}[{i}]", struct)
                return
            for i, v in enumerate(value):
                self.walk(item, v, f"{path}[{i}]", struct)
        elif k == MAP:
            if type(value) is not dict:
                self.type_error(value, node, path, struct)
                return
            item = node.item
            if item is None or item.kind == ANY:
                return
            if item.kind == STR:
                for v in value.values():
                    if type(v) is not str and v is not None:
                        self.type_error(v, item, path, struct)
                return
            for key, v in value.items():
                self.walk(item, v, f"{path}.{key}", struct)
        elif k == INT:
            if type(value) is not int:
                self.type_error(value, node, path, struct)
            else:
                lo, hi = _INT32 if node.bits == 32 else _INT64
                if not lo <= value <= hi:
                    self.type_error(value, node, path, struct)
        elif k == BOOL:
            if type(value) is not bool:
                self.type_error(value, node, path, struct)
        elif k == NUM:
            if type(value) not in (int, float):
                self.type_error(value, node, path, struct)
        elif k == INTSTR:
            t = type(value)
            if t is str:
                return
            if t is int and _INT32[0] <= value <= _INT32[1]:
                return
            self.hard_error(path, value, f"json: cannot unmarshal {_json_kind(value)} into Go value of type int32")
        elif k == QTY:
            if type(value) in (str, int, float):
                try:
                    quantity.parse(value)
                    return
                except quantity.QuantityError as e:
                    self.hard_error(path, value, str(e))
                    return
            self.hard_error(path, value, quantity.FORMAT_ERROR)
        elif k == TIME:
            if type(value) is not str:
                self.hard_error(path, value, f"json: cannot unmarshal {_json_kind(value)} into Go value of type string")
            elif value in _VALID_TIMES:
                return
            elif not _RFC3339.match(value):
                self.hard_error(path, value, f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": '
                                f'cannot parse "{value}" as "2006"')
            else:
                if len(_VALID_TIMES) >= _VALID_TIMES_LIMIT:
                    _VALID_TIMES.clear()
                _VALID_TIMES.add(value)


_INDEX = re.compile(r"\[\d+\]")
# timestamps that matched _RFC3339 (creation times, condition transitions repeat on every write);
# dropped whole when full, invalid ones are never kept
_VALID_TIMES: set[str] = set()
_VALID_TIMES_LIMIT = 8192


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return f"number {orjson.dumps(value).decode()}" if not isinstance(value, int) or \
            value > _INT32[1] or value < _INT32[0] else "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# ---- the compiled fast check ---------------------------------------------------------------
#
# Most bodies are clean. Each definition compiles once (schemacompile.py) into checks that only
# answer "would the walk above find nothing to report?", without building a field path or a
# message: a native one (jsonschema-rs) first, then a generated Python function, which also drops
# null-valued properties; a False from both sends the object through the walk, which then says
# exactly what and where.

def _checker(node: Node) -> Callable[[Any], bool]:
    from kubeling.api.schemacompile import checker  # it builds on this module's node kinds

    return checker(node)


# validations of a kind walked before its fast checks are compiled (tens of ms each: the Pod's native
# check ~57 ms): start-up writes a few objects of many kinds, a cluster's traffic many of a few
COMPILE_AFTER = 100


def _native(node: Node) -> Callable[[Any], bool]:
    from kubeling.api.schemacompile import native_checks

    node.native, node.nulls = native_checks(node) or (_never, _never)
    return node.native


def precompile(resource: Any) -> None:
    """Compile ``resource``'s native check now, not at its 101st write: the kinds a cluster writes
    all the time (pods, leases, nodes, events) are compiled while the server is still idle after
    start-up, so the compile (~35 ms for the Pod, with the GIL held) does not stall a burst of writes."""
    node = root_node(resource)
    if node is not None and node.native is None:
        _native(node)


def _never(_value: Any) -> bool:
    return False


@dataclass(slots=True)
class DecodeError(FieldError):
    """A decoding failure (wrong type, bad quantity): upstream answers 400, not 422."""

    message: str = ""

    def __str__(self) -> str:
        return self.message


def validate(resource: Any, obj: dict[str, Any], *,
             field_validation: str = "Strict") -> tuple[list[FieldError], list[str]]:
    """Check ``obj`` as upstream's decoder would; returns (errors, warnings).

    Errors are DecodeError (wrong type/format; always fatal) or "Unknown field"
    FieldErrors (Strict only). With Warn/Ignore, unknown fields are removed from
    ``obj`` in place; Warn reports them as warnings (``unknown field "spec.foo"``).
    Nulls are dropped as decoding into Go structs would.
    """
    hit = _ROOTS.get(id(resource))  # root_node's cache, read here: a call costs more than the look-up
    node = hit[1] if hit is not None and hit[0] is resource else root_node(resource)
    if node is None or not isinstance(obj, dict):
        return [], []
    if node.native is None and node.walks < COMPILE_AFTER:
        node.walks += 1  # a kind seldom written (start-up's roles, say) is not worth compiling
    # nothing to report: the usual case, settled without building a single path (the native check
    # does not tell a dict subclass from a dict: the walk refuses one)
    elif type(obj) is dict:
        try:
            if (node.native or _native(node))(obj) or node.nulls(obj):
                return [], []
        except Exception:  # a value jsonschema-rs cannot read (a datetime from YAML, say): not its call
            pass
    if node.native is not None and (node.check or _checker(node))(obj):
        return [], []
    w = _Walk(prune=field_validation != "Strict")
    w.walk(node, obj, "", node.struct)
    if w.first_error is not None:
        return [w.first_error], []
    if field_validation == "Strict":
        return [FieldError("Unknown field", p) for p in w.unknown], []
    if field_validation == "Warn":
        return [], [f'unknown field "{p}"' for p in w.unknown]
    return [], []


def validate_strict(resource: Any, obj: dict[str, Any]) -> list[FieldError]:
    """The contract's form: strict validation, errors only."""
    return validate(resource, obj)[0]


def decode_error(resource: Any, errors: list[FieldError]) -> StatusError:
    """The 400 BadRequest upstream answers for decode/strict errors."""
    if isinstance(resource, tuple):
        _, version, kind = resource
    else:
        version, kind = resource.version, resource.kind
    if errors and isinstance(errors[0], DecodeError):
        why = str(errors[0])
    else:
        why = "strict decoding error: " + ", ".join(str(e) for e in errors)
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {why}')
