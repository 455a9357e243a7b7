"""``additionalPrinterColumns``: the Table a CRD version prints, cells read with kubectl's JSONPath.

Upstream's CRD table convertor always starts with Name; without printer columns it adds Age
(``.metadata.creationTimestamp`` as a date). The JSONPath subset real CRDs use is supported:
fields, ``[n]`` indexes, ``[*]``, and ``[?(@.key=="value")]`` filters.
"""

from __future__ import annotations

import re
from typing import Any

Obj = dict[str, Any]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
              "description": "CreationTimestamp is a timestamp representing the server time when this object "
                             "was created."}
_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-/]+)|\['([^']*)'\]|\[(\*|-?\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]""")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values ``path`` selects in ``obj`` (empty when a step is missing)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    if not path.startswith(".") and not path.startswith("["):
        path = "." + path
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        key, qkey, idx, fkey, fval = m.groups()
        nxt: list[Any] = []
        for v in values:
            if key is not None or qkey is not None:
                k = key if key is not None else qkey
                if isinstance(v, dict) and k in v:
                    nxt.append(v[k])
            elif idx is not None:
                if isinstance(v, list):
                    if idx == "*":
                        nxt.extend(v)
                    elif -len(v) <= int(idx) < len(v):
                        nxt.append(v[int(idx)])
                elif isinstance(v, dict) and idx == "*":
                    nxt.extend(v.values())
            else:
                if isinstance(v, list):
                    for item in v:
                        got = jsonpath(item, "." + fkey)
                        if got and str(got[0]) == fval:
                            nxt.append(item)
        values = nxt
    return values


def _cell(col: Obj, obj: Obj) -> Any:
    found = jsonpath(obj, col.get("jsonPath", ""))
    if not found:
        return None
    value = found[0] if len(found) == 1 else ", ".join(str(v) for v in found)
    t = col.get("type")
    try:
        if t == "integer" and not isinstance(value, bool):
            return int(value)
        if t == "number" and not isinstance(value, bool):
            return float(value) if not isinstance(value, int) else value
        if t == "boolean":
            return bool(value)
    except (TypeError, ValueError):
        return None
    if t == "date":
        from kubeling.api.timeutil import translate_timestamp_since

        return translate_timestamp_since(str(value))
    if isinstance(value, dict | list):
        import orjson

        return orjson.dumps(value).decode()
    return value


def columns(custom_columns: list[Obj]) -> list[Obj]:
    return [{"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}] + [
        {"name": c.get("name", ""), "type": c.get("type", "string"), "format": c.get("format", ""),
         "description": c.get("description", ""), "priority": int(c.get("priority") or 0)}
        for c in (custom_columns or [AGE_COLUMN])]


def to_table(custom_columns: list[Obj], objects: list[Obj], *, include_object: str = "Metadata",
             list_meta: Obj | None = None, table_version: str = "v1", no_headers: bool = False) -> Obj:
    from kubeling.api.tables import _row_object

    cols = custom_columns or [AGE_COLUMN]
    rows = []
    for obj in objects:
        cells = [(obj.get("metadata") or {}).get("name", "")] + [_cell(c, obj) for c in cols]
        rows.append({"cells": cells, "object": _row_object(obj, include_object, table_version)})
    table: Obj = {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}", "metadata": dict(list_meta or {})}
    if not no_headers:
        table["columnDefinitions"] = columns(custom_columns)
    table["rows"] = rows
    return table
