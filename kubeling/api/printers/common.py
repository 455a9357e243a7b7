"""Shared pieces of table printers: column definitions, ages, container layout.

Column descriptions are upstream's Go doc strings (SwaggerDoc); the same texts ship
as OpenAPI descriptions with kubernetes-validate, so they are looked up there lazily
instead of being copied into the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from kubeling.api.timeutil import translate_timestamp_since

Obj = dict[str, Any]
RowFn = Callable[[Obj, datetime], list[Any]]
ConditionsFn = Callable[[Obj], list[dict[str, str]] | None]

# (name, type, description or "@definition.field", priority, format)
Column = tuple[str, str, str, int, str]


def col(name: str, type_: str = "string", desc: str = "", priority: int = 0, fmt: str = "") -> Column:
    return (name, type_, desc, priority, fmt)


NAME = col("Name", "string", "@meta.v1.ObjectMeta.name", fmt="name")
AGE = col("Age", "string", "@meta.v1.ObjectMeta.creationTimestamp")
CONTAINERS = col("Containers", "string", "Names of each container in the template.", 1)
IMAGES = col("Images", "string", "Images referenced by each container in the template.", 1)


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    row: RowFn
    conditions: ConditionsFn | None = None


@cache
def _definitions() -> dict[str, Any]:
    import kubernetes_validate

    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.32.0-local" / "_definitions.json"
    try:
        data = orjson.loads(path.read_bytes())
    except OSError:
        return {}
    return data.get("$defs") or data.get("definitions") or {}


def describe(text: str) -> str:
    """Resolve "@group.version.Type.field" to its upstream doc string; other text is literal."""
    if not text.startswith("@"):
        return text
    definition, _, fld = text[1:].rpartition(".")
    prefix = "io.k8s.apimachinery.pkg.apis." if definition.startswith("meta.") else "io.k8s.api."
    props = (_definitions().get(prefix + definition) or {}).get("properties") or {}
    return (props.get(fld) or {}).get("description", "")


@cache
def column_definitions(columns: tuple[Column, ...]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": n, "type": t, "format": f, "description": describe(d), "priority": p}
                 for n, t, d, p, f in columns)


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def name(obj: Obj) -> str:
    return meta(obj).get("name", "")


def age(obj: Obj, now: datetime) -> str:
    return translate_timestamp_since(meta(obj).get("creationTimestamp"), now)


def spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def layout_containers(containers: list[Obj] | None) -> tuple[str, str]:
    """Container names and images, comma-joined, for wide columns."""
    containers = containers or []
    return (",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers))


def template_containers(obj: Obj) -> list[Obj]:
    return ((spec(obj).get("template") or {}).get("spec") or {}).get("containers") or []


def int_or_string(value: Any) -> str:
    return str(value)


def bool_ptr(value: Any) -> str:
    """printBoolPtr: "True"/"False", "<unset>" when nil."""
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def list_with_more(items: list[str], count: int, maximum: int = 3, empty: str = "<unset>") -> str:
    shown = ",".join(items[:maximum])
    if count > maximum:
        return f"{shown} + {count - maximum} more..."
    return shown or empty
