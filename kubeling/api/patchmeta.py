"""Strategic-merge metadata of built-in kinds, read from the upstream v1.32 schema.

Upstream's strategic merge patch reads Go struct tags (``patchStrategy``,
``patchMergeKey``); the OpenAPI definitions that kubernetes-validate ships carry
the same facts as ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``
(plus ``x-kubernetes-list-type`` / ``-list-map-keys`` that server-side apply uses).
``node_for(definition)`` gives a navigable, cached node; ``node.field(key)`` says
how one field of that object merges and what schema its value (or list item) has.

Definitions we do not know (custom resources) get ``GENERIC``: maps merge, lists
are replaced, and ``supports_strategic_merge`` is False, because upstream answers
415 to a strategic merge patch on a custom resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

SCHEMA_DIR = "v1.32.0-local"
_REF_PREFIX = "#/$defs/"


@dataclass(frozen=True, slots=True)
class FieldMeta:
    """How one field merges.

    ``strategy`` is "merge", "replace" or "" (default: maps merge, lists are
    replaced); ``retain_keys`` is the extra retainKeys strategy; ``merge_key``
    names the key identifying list items. ``list_type``/``list_map_keys`` are the
    server-side-apply facts. ``node`` is the schema of the value, or of one item
    for lists.
    """

    strategy: str
    retain_keys: bool
    merge_key: str
    list_type: str
    list_map_keys: tuple[str, ...]
    node: SchemaNode

    @property
    def is_merge_list(self) -> bool:
        return self.strategy == "merge"

    @property
    def atomic(self) -> bool:
        """A list replaced as a whole (no merge strategy)."""
        return self.strategy != "merge"


class SchemaNode:
    """One schema (object, map or anything) with per-field metadata computed on demand."""

    __slots__ = ("name", "_schema", "_fields", "known")

    def __init__(self, schema: dict[str, Any] | None, name: str = "", *, known: bool = True) -> None:
        self.name = name
        self._schema = schema or {}
        self._fields: dict[str, FieldMeta] = {}
        self.known = known

    def __repr__(self) -> str:
        return f"SchemaNode({self.name or '<inline>'})"

    def field(self, key: str) -> FieldMeta:
        """Metadata of ``key`` in an object (or of any value, for a map type)."""
        meta = self._fields.get(key)
        if meta is None:
            meta = self._fields[key] = _field_meta(self._schema, key) if self.known else _GENERIC_FIELD
            if len(self._fields) > 4096:  # maps with arbitrary keys: do not grow forever
                self._fields.clear()
        return meta

    def has_field(self, key: str) -> bool:
        props = self._schema.get("properties")
        return bool(props) and key in props

    @property
    def map_type(self) -> str:
        return self._schema.get("x-kubernetes-map-type", "")


GENERIC = SchemaNode(None, "generic", known=False)
_GENERIC_FIELD = FieldMeta("", False, "", "", (), GENERIC)


def _schema_file() -> Path:
    import kubernetes_validate

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / SCHEMA_DIR / "_definitions.json"


@cache
def _definitions() -> dict[str, Any]:
    return orjson.loads(_schema_file().read_bytes())["$defs"]


@cache
def _node_by_name(name: str) -> SchemaNode | None:
    schema = _definitions().get(name)
    if schema is None:
        return None
    return SchemaNode(schema, name)


def _resolve(schema: dict[str, Any]) -> SchemaNode:
    """A node for an inline schema or a $ref to a definition (shared, so cached)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return _node_by_name(ref[len(_REF_PREFIX):]) or GENERIC
    for combo in ("allOf", "oneOf", "anyOf"):
        parts = schema.get(combo)
        if parts and len(parts) == 1 and isinstance(parts[0], dict):
            return _resolve(parts[0])
    if "properties" in schema or "additionalProperties" in schema or "items" in schema:
        return SchemaNode(schema)
    return GENERIC


def _field_meta(schema: dict[str, Any], key: str) -> FieldMeta:
    props = schema.get("properties") or {}
    prop = props.get(key)
    if prop is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            prop = extra
        else:
            return _GENERIC_FIELD
    strategies = [s.strip() for s in str(prop.get("x-kubernetes-patch-strategy", "")).split(",") if s.strip()]
    retain = "retainKeys" in strategies
    strategy = next((s for s in strategies if s != "retainKeys"), "")
    items = prop.get("items")
    value = items if isinstance(items, dict) else prop
    return FieldMeta(
        strategy=strategy,
        retain_keys=retain,
        merge_key=str(prop.get("x-kubernetes-patch-merge-key", "")),
        list_type=str(prop.get("x-kubernetes-list-type", "")),
        list_map_keys=tuple(prop.get("x-kubernetes-list-map-keys") or ()),
        node=_resolve(value),
    )


def node_for(definition: str | None) -> SchemaNode:
    """The root node of a definition such as ``io.k8s.api.apps.v1.DaemonSet``; GENERIC if unknown."""
    if not definition:
        return GENERIC
    return _node_by_name(definition) or GENERIC


def supports_strategic_merge(definition: str | None) -> bool:
    """Upstream serves strategic merge patch only for compiled-in (built-in) types."""
    return bool(definition) and _node_by_name(definition) is not None  # type: ignore[arg-type]


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name of a built-in group/version/kind (via x-kubernetes-group-version-kind)."""
    return _gvk_index().get((group, version, kind))


@cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in _definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            # meta/v1 kinds (DeleteOptions, WatchEvent) are listed under every group: keep the first
            index.setdefault(key, name)
    return index
