"""The fast checks of schema.py: a native one (jsonschema-rs), then a generated Python function.

A check answers one question: would schema._Walk find nothing to report in this value (no wrong
type, no bad format, no unknown field)? It builds no path and no message; a False sends the body
on (to the next check, then the walk, which says exactly what and where). A False is therefore
always safe, only slower: rare shapes (a null item in a list, a quantity in exponent form) may
answer False although the walk finds nothing. A True must never hide something the walk reports.

The one mutation the walk makes on clean bodies, dropping a null-valued known property, is made by
the checks too (the native check's second chance, the generated function's _drop_nulls), so that
a True leaves the object exactly as the walk would.

The native check (bottom of this file) walks the whole body in compiled code: about 4x fewer
instructions than the generated function on a running pod. The generated function stands behind
it for what it refuses (bodies with nulls it cannot place, values it cannot read) and in its stead
where jsonschema-rs is missing or draws other lines (checked once, _self_test).

Why generated code: on CPython every bytecode and every call counts. An object is one loop over its
keys whose common step (a string or boolean property of the right type) is one look-up in the
definition's table and one identity test; an unknown key fails that look-up (KeyError, caught once
for the whole function). What the type alone does not settle is written out inline for the kinds
the definition has (integer ranges, timestamps, lists and maps of strings), and so are the first
few nested objects and lists of objects: a call costs as much as a dozen bytecodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubeling.api import quantity
from kubeling.api import schema as s

Check = Callable[[Any], bool]

# nested objects written out inside their parent's loop, per object (the rest are calls): each
# costs the keys of the parent that come after it one more test
INLINE_CHILDREN = 2
# objects are not written out deeper than this inside one function (nor recursive ones at all)
INLINE_DEPTH = 2
# a definition with more properties than this iterates items() (cheaper per key), else its keys
# (cheaper to start)
ITEMS_ABOVE = 12


class _Code:
    """A marker in an object's table: the property's value is checked by an inline branch."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def checker(node: s.Node) -> Check:
    """The fast check of ``node``, compiled on first use and kept on the node; registered before
    its children are compiled so that recursive definitions (JSONSchemaProps) resolve."""
    if node.check is not None:
        return node.check
    k = node.kind
    if k == s.OBJ:
        _Function(node).compile()
    elif k in (s.ARR, s.MAP):
        node.check = _collection_check(node)
    else:
        node.check = _SCALAR_CHECKS[k](node)
    return node.check


# the inline test of a scalar in variable {v} that is not null: a condition that holds when fine
_SCALAR_OK: dict[int, str] = {
    s.STR: "type({v}) is str",
    s.BOOL: "type({v}) is bool",
    s.NUM: "type({v}) is int or type({v}) is float",
    s.INTSTR: f"type({{v}}) is str or type({{v}}) is int and {s._INT32[0]} <= {{v}} <= {s._INT32[1]}",
    s.TIME: "type({v}) is str and ({v} in VT or time_ok({v}))",
}


def _int_ok(node: s.Node) -> str:
    lo, hi = s._INT32 if node.bits == 32 else s._INT64
    return f"type({{v}}) is int and {lo} <= {{v}} <= {hi}"


def _scalar_ok(node: s.Node) -> str | None:
    """The inline condition for a scalar kind, None for kinds that need a call (quantities)."""
    if node.kind == s.INT:
        return _int_ok(node)
    return _SCALAR_OK.get(node.kind)


class _Function:
    """Writes the source of one definition's check: its own loop and what is inlined in it."""

    def __init__(self, node: s.Node) -> None:
        self.root = node
        self.ns: dict[str, Any] = {"VT": s._VALID_TIMES, "time_ok": _time_ok, "fix": _drop_nulls, "Code": _Code}
        self.lines: list[str] = []
        self.calls: list[tuple[str, s.Node]] = []  # (name in ns, node) of the checks called, bound last
        self.tables: list[tuple[dict[str, Any], str, s.Node]] = []  # to fill with called checks
        self.counter = 0
        self.names: dict[int, str] = {}  # id(node) -> the ns name of its standalone check

    def compile(self) -> None:
        node = self.root
        self.lines = ["def check(value):",
                      "    if type(value) is not dict:",
                      "        return False",
                      "    try:"]
        self._object(node, "value", 2, 0, frozenset())
        self.lines += ["    except KeyError:",  # an unknown field, at any depth
                       "        return False",
                       "    return True"]
        source = "\n".join(self.lines)
        exec(compile(source, f"<schema check {node.go or node.struct}>", "exec"), self.ns)
        node.check = self.ns["check"]
        # what the function calls, bound now that it is registered: a definition that contains
        # itself (JSONSchemaProps) finds its own check
        for name, callee in self.calls:
            self.ns[name] = checker(callee)
        for table, key, callee in self.tables:
            table[key] = checker(callee)

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _call(self, node: s.Node) -> str:
        name = self.names.get(id(node))
        if name is None:
            name = self.names[id(node)] = self._name("C")
            self.calls.append((name, node))
        return name

    def _emit(self, indent: int, *lines: str) -> None:
        pad = "    " * indent
        self.lines += [pad + line for line in lines]

    def _value(self, node: s.Node, var: str, indent: int, depth: int, seen: frozenset[int]) -> None:
        """Lines that return False unless the non-null value in ``var`` is fine for ``node``."""
        k = node.kind
        cond = _scalar_ok(node)
        if cond is not None:
            self._emit(indent, f"if not ({cond.format(v=var)}):", "    return False")
        elif k == s.ANY:
            pass
        elif k == s.OBJ and self._inlinable(node, depth, seen):
            self._emit(indent, f"if type({var}) is not dict:", "    return False")
            self._object(node, var, indent, depth, seen)
        elif k in (s.ARR, s.MAP):
            self._collection(node, var, indent, depth, seen)
        else:  # objects not written out here, quantities
            self._emit(indent, f"if not {self._call(node)}({var}):", "    return False")

    def _inlinable(self, node: s.Node, depth: int, seen: frozenset[int]) -> bool:
        return depth < INLINE_DEPTH and id(node) not in seen

    def _collection(self, node: s.Node, var: str, indent: int, depth: int, seen: frozenset[int]) -> None:
        want = "list" if node.kind == s.ARR else "dict"
        self._emit(indent, f"if type({var}) is not {want}:", "    return False")
        item = node.item
        if item is None or item.kind == s.ANY:
            return
        items = var if node.kind == s.ARR else f"{var}.values()"
        x = f"x{indent}"  # locals named by nesting: every local costs each call, used or not
        if item.kind in (s.STR, s.BOOL):  # null items are fine: the walk skips them
            self._emit(indent, f"for {x} in {items}:",
                       f"    if type({x}) is not {'str' if item.kind == s.STR else 'bool'} and {x} is not None:",
                       "        return False")
            return
        # a null item answers False (the walk, which skips it, then runs): rare
        self._emit(indent, f"for {x} in {items}:")
        self._value(item, x, indent + 1, depth, seen)

    def _object(self, node: s.Node, var: str, indent: int, depth: int, seen: frozenset[int]) -> None:
        """The loop over the keys of the dict in ``var`` (its type already checked)."""
        seen = seen | {id(node)}
        table: dict[str, Any] = {}
        tname = self._name("T")
        kv, vv, tv = f"k{indent}", f"v{indent}", f"t{indent}"  # as x in _collection
        self.ns[tname] = table
        shared: dict[str, tuple[str, s.Node]] = {}  # signature -> (code, a child): one branch for all
        objects: list[tuple[str, s.Node]] = []  # (code, child) of the nested objects written out
        called = False
        for pname, child in node.props.items():
            entry = self._entry(child, depth, seen, len(objects))
            if entry is None:  # a call: the check is bound once compiled
                self.tables.append((table, pname, child))
                table[pname] = None
                called = True
            elif isinstance(entry, type):
                table[pname] = entry
            elif entry:  # scalars, lists of strings: one branch per kind
                code, _ = shared.setdefault(entry, (self._name("K"), child))
                table[pname] = self.ns.setdefault(code, _Code(entry))
            else:
                code = self._name("K")
                objects.append((code, child))
                table[pname] = self.ns[code] = _Code(f"{node.go}.{pname}")
        fix = self._call(node) if node is not self.root else "check"
        if len(node.props) > ITEMS_ABOVE:
            self._emit(indent, f"for {kv}, {vv} in {var}.items():")
        else:
            self._emit(indent, f"for {kv} in {var}:", f"    {vv} = {var}[{kv}]")
        body = indent + 1
        if not node.strict:  # unknown fields ignored, not reported (no upstream definition is so)
            self._emit(body, f"if {kv} not in {tname}:", "    continue")
        self._emit(body, f"{tv} = {tname}[{kv}]",
                   f"if type({vv}) is {tv}:", "    continue",
                   f"if {vv} is None:",  # dropped (all of this object's nulls), then checked again
                   f"    if fix({var}, {tname}, {fix}):", "        break", "    return False")
        for code, child in [*shared.values(), *objects]:
            self._emit(body, f"if {tv} is {code}:")
            self._value(child, vv, body + 1, depth + 1, seen)
            self._emit(body, "    continue")
        if called:
            self._emit(body, f"if type({tv}) is type or type({tv}) is Code:",  # a wrong type
                       "    return False",
                       f"if not {tv}({vv}):", "    return False")
        else:
            self._emit(body, "return False")

    def _entry(self, child: s.Node, depth: int, seen: frozenset[int], objects: int) -> type | str | None:
        """How a property is checked in its object's loop: by its type alone (the type), by a
        shared inline branch (its signature), by a branch of its own ("": nested objects and lists
        of them, the first few), or by a call (None)."""
        k = child.kind
        if k in (s.STR, s.BOOL):
            return str if k == s.STR else bool
        if k in (s.ARR, s.MAP):
            item = child.item
            if item is None or item.kind == s.ANY:
                return list if k == s.ARR else dict
            if item.kind in (s.STR, s.BOOL):
                return f"{k}:{item.kind}"
            nested = item
        elif k == s.QTY:
            return None
        elif k == s.OBJ:
            nested = child
        else:
            return f"{k}:{child.bits}"
        if nested.kind == s.OBJ and (objects >= INLINE_CHILDREN or not self._inlinable(nested, depth + 1, seen)):
            return None
        return ""


def _drop_nulls(value: dict[str, Any], table: dict[str, Any], check: Check) -> bool:
    """The slow branch of an object's check: drop the null-valued known properties, as decoding
    into a Go struct does, and check the object again."""
    for key in [key for key, v in value.items() if v is None and key in table]:
        del value[key]
    return check(value)


# ---- collections and scalars on their own (items of collections, called properties) ------------

def _collection_check(node: s.Node) -> Check:
    want = list if node.kind == s.ARR else dict
    item = node.item
    if item is None or item.kind == s.ANY:
        return lambda value: type(value) is want
    cell: list[Check] = []

    # null items answer False: the walk (which skips them) then runs; they are rare
    def check_list(value: Any) -> bool:
        if type(value) is not list:
            return False
        c = cell[0]
        for x in value:  # noqa: SIM110 - a plain loop: all() over a generator costs more
            if not c(x):
                return False
        return True

    def check_map(value: Any) -> bool:
        if type(value) is not dict:
            return False
        c = cell[0]
        for x in value.values():  # noqa: SIM110 - as above
            if not c(x):
                return False
        return True

    node.check = check_list if want is list else check_map
    cell.append(checker(item))
    return node.check


def _time_ok(value: str) -> bool:
    """A timestamp (a str) not in the cache of valid ones: match it, remember it."""
    if not s._RFC3339.match(value):
        return False
    if len(s._VALID_TIMES) >= s._VALID_TIMES_LIMIT:
        s._VALID_TIMES.clear()
    s._VALID_TIMES.add(value)
    return True


def _quantity_check(_node: s.Node) -> Check:
    def check(value: Any) -> bool:
        if type(value) not in (str, int, float):
            return False
        try:
            quantity.parse(value)
        except quantity.QuantityError:
            return False
        return True
    return check


def _inline_scalar(node: s.Node) -> Check:
    """A scalar's check on its own (an item of a collection of integers, say): its inline test."""
    cond = _scalar_ok(node)
    assert cond is not None
    ns = {"VT": s._VALID_TIMES, "time_ok": _time_ok}
    exec(f"def check(v):\n    return {cond.format(v='v')}", ns)
    return ns["check"]


_SCALAR_CHECKS: dict[int, Callable[[s.Node], Check]] = {
    s.STR: _inline_scalar, s.BOOL: _inline_scalar, s.INT: _inline_scalar, s.NUM: _inline_scalar,
    s.INTSTR: _inline_scalar, s.TIME: _inline_scalar, s.QTY: _quantity_check,
    s.ANY: lambda _node: lambda _value: True,
}


# ---- the native check ----------------------------------------------------------------------------
#
# In front of the generated function: the same question put to jsonschema-rs (a dependency of the
# project), which walks the whole body in compiled code, several times cheaper than any bytecode.
# The JSON schema is written here from the nodes, not taken from upstream, so that it accepts no
# more than the walk: draft 4 (where 1.0 is not an integer), no null anywhere (its second chance
# reads where the nulls are: see native_checks), integer ranges, timestamps by the walk's own
# pattern, quantities only in a form quantity.parse always accepts (the others, and anything
# jsonschema-rs cannot read, such as a datetime from YAML, take the generated function).
#
# What it cannot tell apart: a tuple from a list, a dict subclass from a dict, an Enum member or a
# Decimal from its value. None of them comes from a request body (JSON, YAML or protobuf decoded)
# or from storage; validate() checks the top level itself.

_QUANTITY_PATTERN = r"^[+-]?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
_JSON_NOT_NULL = ["object", "array", "string", "number", "boolean"]


def native_checker(node: s.Node) -> Check | None:
    """The jsonschema-rs check of a definition (an object node), None without a usable
    jsonschema-rs. It raises on a value it cannot read (a datetime, a set): the caller's to catch."""
    checks = native_checks(node)
    return checks[0] if checks is not None else None


def native_checks(node: s.Node) -> tuple[Check, Check] | None:
    """(the check, its second chance for a body it refused) of a definition, None without a
    usable jsonschema-rs. The second chance asks the same validator for all its errors: when each
    is a null where the walk drops it (a property) or passes it over (a list item, a map value),
    it drops the former and answers True, as the walk would have; otherwise False."""
    if not _native_usable():
        return None
    import jsonschema_rs

    definitions: dict[str, Any] = {}
    root = _json_schema(node, definitions)
    try:
        validator = _validator(jsonschema_rs, {**root, "definitions": definitions})
    except Exception:  # a schema it will not compile: the generated function does the work, as before
        return None
    iter_errors = validator.iter_errors

    def only_nulls(value: Any) -> bool:
        drop: list[list[Any]] = []
        for error in iter_errors(value):
            if error.instance is not None:
                return False
            step = _last_step(list(error.evaluation_path))
            if step is None:
                return False
            if step == "properties":
                drop.append(list(error.instance_path))
        for path in drop:
            parent = value
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        return True
    return validator.is_valid, only_nulls


# the keywords _json_schema writes, by what a step through them leads to
_STEPS = {"properties": 2, "items": 1, "additionalProperties": 1, "$ref": 1}


def _last_step(path: list[Any]) -> str | None:
    """Where a failing "type" or "anyOf" keyword sits (the evaluation path of a jsonschema-rs
    error): "properties" (the value of an object's property), "items" or "additionalProperties"
    (an item of a list or map), None for anything else. Read from the root: a property may be named
    like a keyword ("items", "properties" in JSONSchemaProps)."""
    if not path or path[-1] not in ("type", "anyOf"):
        return None
    last, i, end = None, 0, len(path) - 1
    while i < end:
        keyword = path[i]
        width = _STEPS.get(keyword)
        if width is None or i + width > end:
            return None
        if keyword != "$ref":
            last = keyword
        i += width
    return last


def _validator(jsonschema_rs: Any, schema: dict[str, Any]) -> Any:
    try:
        return jsonschema_rs.Draft4Validator(schema, offline=True)  # nothing to fetch: local refs only
    except TypeError:  # an older jsonschema-rs without the option
        return jsonschema_rs.Draft4Validator(schema)


def _json_schema(node: s.Node, definitions: dict[str, Any]) -> dict[str, Any]:
    k = node.kind
    if k == s.OBJ:  # one definition per node: shared nodes (and recursive ones) by reference
        name = f"n{id(node)}"
        if name not in definitions:
            definitions[name] = {}
            d: dict[str, Any] = {"type": "object",
                                 "properties": {p: _json_schema(c, definitions) for p, c in node.props.items()}}
            if node.strict:
                d["additionalProperties"] = False
            definitions[name] = d
        return {"$ref": f"#/definitions/{name}"}
    if k in (s.ARR, s.MAP):
        item = {"type": _JSON_NOT_NULL} if node.item is None else _json_schema(node.item, definitions)
        return {"type": "array", "items": item} if k == s.ARR else {"type": "object", "additionalProperties": item}
    if k == s.INT:
        lo, hi = s._INT32 if node.bits == 32 else s._INT64
        return {"type": "integer", "minimum": lo, "maximum": hi}
    if k == s.INTSTR:  # the bounds apply to the integers only
        return {"type": ["string", "integer"], "minimum": s._INT32[0], "maximum": s._INT32[1]}
    if k == s.QTY:  # every number is a quantity (quantity.parse of its repr); strings of this shape too
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": _QUANTITY_PATTERN}]}
    if k == s.TIME:
        return {"type": "string", "pattern": s._RFC3339.pattern}
    if k == s.ANY:
        return {"type": _JSON_NOT_NULL}
    return {"type": {s.STR: "string", s.BOOL: "boolean", s.NUM: "number"}[k]}


_NATIVE: list[bool] = []  # the self-test's verdict, once


def _native_usable() -> bool:
    """Whether jsonschema-rs is there and draws the lines the walk draws (checked once, on the
    points where JSON-schema drafts and versions differ)."""
    if not _NATIVE:
        _NATIVE.append(_self_test())
    return _NATIVE[0]


def _self_test() -> bool:
    try:
        import jsonschema_rs
    except ImportError:
        return False
    try:
        v = _validator(jsonschema_rs, {"type": "object", "additionalProperties": False, "properties": {
            "i": {"type": "integer", "minimum": s._INT64[0], "maximum": s._INT64[1]},
            "s": {"type": "string", "pattern": s._RFC3339.pattern}}})
        accepted = [{"i": 1}, {"i": s._INT64[1]}, {"s": "2024-01-01T00:00:00Z"}]
        refused = [{"i": 1.0}, {"i": True}, {"i": s._INT64[1] + 1}, {"i": 2**70}, {"i": None}, {"x": 1},
                   {"s": "2024-01-01T00:00:00Z\n"}, {"s": 1}, []]
        if not all(v.is_valid(x) for x in accepted) or any(_safe(v.is_valid, x) for x in refused):
            return False
        errors = list(v.iter_errors({"i": None}))  # what the second chance reads of an error
        return len(errors) == 1 and list(errors[0].instance_path) == ["i"] \
            and _last_step(list(errors[0].evaluation_path)) == "properties"
    except Exception:
        return False


def _safe(is_valid: Callable[[Any], bool], value: Any) -> bool:
    try:
        return is_valid(value)
    except Exception:
        return False
