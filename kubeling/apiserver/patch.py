"""The PATCH verb's four body types, applied to an object as plain dicts.

kubectl picks the type: ``kubectl apply`` (client-side), ``label``, ``annotate``,
``set image``, ``rollout undo/restart``, ``cordon`` send strategic merge patches
to built-in kinds; ``kubectl patch --type json|merge`` the other two;
``kubectl apply --server-side`` sends apply-patch+yaml. Upstream splits the work
between staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go (codes and
messages) and apimachinery/pkg/util/strategicpatch (the merge rules); this module
keeps both behaviours, as pure functions: the caller's object is never changed.

Every rejection is a StatusError with upstream's code: unparsable bodies are 400,
a JSON patch that does not apply is 422 ("the server rejected our request due to
an error in our request"), strategic merge errors that upstream does not map to a
status surface as 500 with the bare message, as they do there.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import yaml

from kubeling.api import patchmeta
from kubeling.api.errors import StatusError, bad_request, invalid, invalid_error, unsupported_media_type
from kubeling.api.patchmeta import FieldMeta, SchemaNode

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)

MAX_JSON_PATCH_OPERATIONS = 10000

# strategic merge directives (apimachinery/pkg/util/strategicpatch/types.go)
DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

# mergepatch sentinel errors and their codes (interpretStrategicMergePatchError)
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"

_MISSING = object()


def apply_patch(patch_type: str, original: dict[str, Any], patch: bytes | str, *,
                schema_ref: str | None = None, owned: bool = False) -> dict[str, Any]:
    """Return ``original`` with ``patch`` applied; ``patch_type`` is the request's Content-Type.

    ``schema_ref`` names the object's definition (``io.k8s.api.apps.v1.DaemonSet``);
    without a known one (custom resources) strategic merge patch is refused with 415.
    ``owned``: the caller hands over a private copy, which is patched in place (and left in any
    state on error) instead of being copied first.
    """
    media = patch_type.split(";", 1)[0].strip().lower()
    if isinstance(patch, str):
        patch = patch.encode()
    if not owned:
        original = _clone(original)
    try:
        if media == JSON_PATCH:
            result = _json_patch(original, patch)
        elif media == MERGE_PATCH:
            result = _merge_patch(original, patch)
        elif media == STRATEGIC_MERGE_PATCH:
            if not patchmeta.supports_strategic_merge(schema_ref):
                raise _unsupported_for_custom_resources()
            result = strategic_merge(original, _decode_object(patch), patchmeta.node_for(schema_ref))
        elif media == APPLY_PATCH:
            result = _apply_yaml(original, patch, patchmeta.node_for(schema_ref))
        else:
            raise unsupported_media_type(patch_type)
    except StatusError:
        raise
    except RecursionError:
        raise bad_request("the patch is nested too deeply") from None
    except Exception as e:  # a bug here must still answer as a Status, never a dropped connection
        raise StatusError(500, "InternalError", f"Internal error occurred: {e}") from e
    if not isinstance(result, dict):
        raise _not_an_object(result)
    return result


def _unsupported_for_custom_resources() -> StatusError:
    accepted = ", ".join((JSON_PATCH, MERGE_PATCH, APPLY_PATCH))
    return StatusError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media types include: {accepted}")


def _rejected(detail: str) -> StatusError:
    """NewGenericServerResponse(422): the message is fixed, the reason travels as a cause."""
    return StatusError(422, "Invalid", "the server rejected our request due to an error in our request",
                       details={"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]})


def _smp_error(message: str) -> StatusError:
    """A plain Go error from strategicpatch: upstream answers 500 with reason Unknown ("")."""
    return StatusError(500, "", message)


def _not_an_object(value: Any) -> StatusError:
    text = orjson.dumps(value).decode() if _dumpable(value) else str(value)
    detail = ("couldn't get version/kind; json parse error: json: cannot unmarshal "
              f"{_json_kind(value)} into Go value of type struct {{ APIVersion string "
              '"json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }')
    return invalid_error("", "", "", [invalid("patch", text, detail)])


def _dumpable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


# --- decoding ---------------------------------------------------------------

def _decode(data: bytes) -> Any:
    if not data or not data.strip():
        raise bad_request("unexpected end of JSON input")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise bad_request(str(e)) from None


def _decode_object(data: bytes) -> dict[str, Any]:
    value = _decode(data)
    if value is None:  # json.Unmarshal("null", &map) leaves the map empty
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"json: cannot unmarshal {_json_kind(value)} into Go value of type map[string]interface {{}}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def _clone(obj: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(obj))
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(obj)


# --- RFC 6902 JSON patch ----------------------------------------------------

def _json_patch(original: dict[str, Any], data: bytes) -> Any:
    ops = _decode(data)
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request(f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(413, "RequestEntityTooLarge",
                          "Request entity too large: The allowed maximum operations in a JSON patch is "
                          f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    # Upstream decodes any array of objects and fails while applying (unknown op,
    # missing path, failed test): all of those are 422. One op at a time, so the
    # message can name the failing op as evanphx/json-patch does.
    doc: Any = original
    for op in ops:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except RecursionError:
            raise
        except Exception as e:
            raise _rejected(_json_patch_message(op, e)) from None
    return doc


def _json_patch_message(op: dict[str, Any], error: Exception) -> str:
    kind = op.get("op")
    path = op.get("path")
    if kind not in ("add", "remove", "replace", "move", "copy", "test"):
        return f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}"
    if not isinstance(path, str):
        return f"{kind} operation does not apply: missing or invalid path"
    if isinstance(error, jsonpatch.JsonPatchTestFailed):
        return f"testing value {path} failed: test failed"
    if kind == "remove":
        return f"error in remove for path: '{path}': Unable to remove nonexistent key: " \
               f"{path.rsplit('/', 1)[-1]}: missing value"
    if kind == "replace":
        return f"replace operation does not apply: doc is missing key: {path}: missing value"
    if kind in ("move", "copy"):
        return f'{kind} operation does not apply: doc is missing from path: "{op.get("from")}": missing value'
    if kind == "test":
        return f"testing value {path} failed: {error}"
    return f'add operation does not apply: doc is missing path: "{path}": missing value'


# --- RFC 7386 JSON merge patch ----------------------------------------------

def _merge_patch(original: dict[str, Any], data: bytes) -> Any:
    try:
        patch = orjson.loads(data) if data and data.strip() else _MISSING
    except orjson.JSONDecodeError:
        patch = _MISSING
    if patch is _MISSING or patch is None:
        raise bad_request("Invalid JSON Patch")
    if not isinstance(patch, dict):
        return patch  # RFC 7386: a non-object patch replaces the document (then fails to decode)
    return merge_patch(original, patch)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 on owned values: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


# --- strategic merge patch --------------------------------------------------

def strategic_merge(original: dict[str, Any], patch: dict[str, Any], node: SchemaNode) -> dict[str, Any]:
    """Apply a decoded strategic merge patch to ``original``, owned and changed in place
    (StrategicMergeMapPatch)."""
    return _merge_map(original, patch, node)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], node: SchemaNode) -> dict[str, Any]:
    """Merge ``patch`` into ``original`` (owned, changed in place) following ``node``'s metadata."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            # the object becomes the patch; run it through an empty map so that
            # directives nested in it do not end up stored as fields
            return _merge_map({}, {k: v for k, v in patch.items() if k != DIRECTIVE}, node)
        if directive == "delete":
            return {}
        raise _smp_error(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")

    rest = dict(patch)
    if RETAIN_KEYS in rest:
        _retain_keys(original, rest, rest.pop(RETAIN_KEYS))

    for key in [k for k in rest if k.startswith(SET_ELEMENT_ORDER)]:
        _set_element_order(original, rest, key, node)

    for key, value in rest.items():
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _directive_field(key, DELETE_FROM_PRIMITIVE_LIST, ERR_BAD_PRIMITIVE_LIST)
        if value is None:
            original.pop(key, None)
            continue
        meta = node.field(key)
        current = original.get(key, _MISSING)
        if is_delete_list:
            if not isinstance(value, list):
                raise _smp_error(f"expected a slice, but received a {_go_kind(value)}")
            if isinstance(current, list):
                original[key] = _delete_from_list(current, value)
            continue
        if current is _MISSING or type(current) is not type(value):
            original[key] = _fresh(value, meta)
        elif isinstance(value, dict):
            original[key] = _fresh(value, meta) if meta.strategy == "replace" else \
                _merge_map(current, value, meta.node)
        elif isinstance(value, list):
            original[key] = _merge_list(current, value, meta)
        else:
            original[key] = value
    return original


def _fresh(value: Any, meta: FieldMeta) -> Any:
    """A patch value for a field the original lacks: taken as is, minus directives."""
    if isinstance(value, dict):
        return _merge_map({}, value, meta.node)
    if isinstance(value, list) and meta.strategy == "merge":
        if any(isinstance(v, dict) and DIRECTIVE in v for v in value):
            return _merge_slice([], value, meta)
        return [_merge_map({}, v, meta.node) if isinstance(v, dict) else v for v in value]
    return value


def _retain_keys(original: dict[str, Any], patch: dict[str, Any], retain: Any) -> None:
    """$retainKeys: drop original keys not listed; every key the patch sets must be listed."""
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise bad_request(ERR_BAD_RETAIN_KEYS)
    keep = set(retain)
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in keep:
            raise bad_request(ERR_BAD_RETAIN_KEYS)
    for key in [k for k in original if k not in keep]:
        del original[key]


def _directive_field(key: str, prefix: str, error: str) -> str:
    head, sep, field = key.partition("/")
    if not sep or head != prefix:
        raise bad_request(error)
    return field


def _set_element_order(original: dict[str, Any], patch: dict[str, Any], key: str, node: SchemaNode) -> None:
    """$setElementOrder/<field>: merge the field's list now, then order it as the directive says.

    Items named in the directive keep its order; items only the server has keep
    theirs and are interleaved by their position in the live list.
    """
    order = patch.pop(key)
    if not isinstance(order, list):
        raise _smp_error(f"expected a slice, but received a {_go_kind(order)}")
    field = _directive_field(key, SET_ELEMENT_ORDER, ERR_BAD_SET_ELEMENT_ORDER)
    current = original.get(field, _MISSING)
    value = patch.get(field, _MISSING)
    if current is not _MISSING and not isinstance(current, list):
        raise _smp_error(f"expected a slice, but received a {_go_kind(current)}")
    if value is not _MISSING and not isinstance(value, list):
        raise _smp_error(f"expected a slice, but received a {_go_kind(value)}")
    meta = node.field(field)
    merge_key = meta.merge_key
    _validate_order(value if value is not _MISSING else [], order, merge_key)

    if current is _MISSING and value is _MISSING:
        return
    if value is _MISSING:
        merged = current
    elif current is _MISSING:
        merged = _fresh(value, meta)
    else:
        merged = _merge_list(current, value, meta)
    patch.pop(field, None)
    if not merged:
        original[field] = merged
        return
    live = current if current is not _MISSING else []
    is_map = _element_kind(live, value if value is not _MISSING else [], merged) is dict
    if is_map:
        in_order, server_only = _partition_maps(merged, order, merge_key)
    else:
        in_order = [v for v in merged if _contains(order, v)]
        server_only = [v for v in merged if not _contains(order, v)]
    original[field] = _normalize_order(in_order, server_only, order, live, merge_key if is_map else None)


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list's items must appear in the same relative order as in $setElementOrder."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _smp_error(f"expected a map, but received a {_go_kind(v)}")
        items = [v for v in patch_list if v.get(DIRECTIVE) != "delete"]
    i = j = 0
    while i < len(items) and j < len(order):
        item = items[i]
        if isinstance(item, dict) and DIRECTIVE in item:
            i += 1
            continue
        if _merge_key_equal(item, order[j], merge_key):
            i += 1
        j += 1
    if i < len(items) and j >= len(order):
        raise _smp_error(f"The order in patch list:\n{_go(patch_list)}\n doesn't match "
                         f"{SET_ELEMENT_ORDER} list:\n{_go(order)}\n")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _eq(left, right)
    for side in (left, right):
        if not isinstance(side, dict):
            raise _smp_error(f"expected a map, but received a {_go_kind(side)}")
        if merge_key not in side:
            raise _no_merge_key(side, merge_key)
    return _eq(left[merge_key], right[merge_key])


def _merge_list(current: list[Any], value: list[Any], meta: FieldMeta) -> list[Any]:
    """Lists with patch strategy merge are merged; all others are replaced by the patch."""
    if meta.strategy == "merge":
        return _merge_slice(current, value, meta)
    return value


def _delete_from_list(current: list[Any], remove: list[Any]) -> list[Any]:
    """$deleteFromPrimitiveList/<field>: drop those values, keep the rest in order."""
    return [v for v in current if not _contains(remove, v)]


def _merge_slice(original: list[Any], patch: list[Any], meta: FieldMeta) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind is not dict:
        merged = _dedupe(original + patch)
        in_patch = [v for v in merged if _contains(patch, v)]
        server_only = [v for v in merged if not _contains(patch, v)]
        return _normalize_order(in_patch, server_only, patch, original, None)

    merge_key = meta.merge_key
    if not merge_key:
        raise _smp_error("cannot merge lists without merge key for type struct")
    original, patch = _apply_list_directives(original, patch, merge_key)
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        index = _find(merged, merge_key, item[merge_key])
        if index >= 0:
            merged[index] = _merge_map(merged[index], item, meta.node)
        else:
            merged.append(_merge_map({}, item, meta.node))
    in_patch, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_order(in_patch, server_only, patch, original, merge_key)


def _apply_list_directives(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Handle ``{"$patch": "delete", <key>: v}`` and ``{"$patch": "replace"}`` items of a merge list."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [o for o in original if not _eq(o.get(merge_key, _MISSING), item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _smp_error("merging lists cannot yet be specified in the patch")
        else:
            raise _smp_error(f"unknown patch type: {_go(directive)} in map: {_go(item)}")
    if replace:
        return plain, []
    return original, plain


def _partition_maps(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    inside: list[Any] = []
    outside: list[Any] = []
    for item in merged:
        if not isinstance(item, dict):
            raise _smp_error(f"expected a map, but received a {_go_kind(item)}")
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        for other in by:
            if not isinstance(other, dict):
                raise _smp_error(f"value for key {_go(other)} is not a map.")
        (inside if _find(by, merge_key, item[merge_key]) >= 0 else outside).append(item)
    return inside, outside


def _normalize_order(patch_items: list[Any], server_only: list[Any], patch_order: list[Any],
                     server_order: list[Any], merge_key: str | None) -> list[Any]:
    """Patch items in patch order, server-only items in live order, interleaved by live position.

    A patch item the live list does not have goes before the next server-only
    item (so with no $setElementOrder new items lead), as upstream's mergeSortedSlice.
    """
    if merge_key is not None:
        for lst in (patch_items, patch_order, server_only, server_order):
            for item in lst:
                if not isinstance(item, dict):
                    raise _smp_error(f"expected a map, but received a {_go_kind(item)}")
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
    left = _sort_by(server_only, server_order, merge_key)
    right = _sort_by(patch_items, patch_order, merge_key)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li = _index(server_order, left[i], merge_key)
            ri = _index(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _sort_by(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    deleted: list[Any] = []
    if merge_key is not None:
        deleted = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    positions = [_index(order, v, merge_key) for v in items]
    ranked = sorted(range(len(items)), key=lambda n: positions[n] if positions[n] >= 0 else len(order))
    return [items[n] for n in ranked] + deleted


def _index(items: list[Any], value: Any, merge_key: str | None) -> int:
    if merge_key is None:
        for n, item in enumerate(items):
            if _eq(item, value):
                return n
        return -1
    wanted = value.get(merge_key) if isinstance(value, dict) else None
    for n, item in enumerate(items):
        if _eq(item.get(merge_key) if isinstance(item, dict) else None, wanted):
            return n
    return -1


def _find(items: list[Any], merge_key: str, value: Any) -> int:
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise _smp_error(f"value for key {n} is not a map.")
        if merge_key in item and _eq(item[merge_key], value):
            return n
    return -1


def _element_kind(*lists: list[Any]) -> type:
    """All items must share one JSON type, and lists of lists are not supported."""
    kind: type | None = None
    for lst in lists:
        for v in lst:
            if kind is None:
                kind = type(v)
                if kind is list:
                    raise _rejected(ERR_LIST_OF_LISTS)
            elif type(v) is not kind:
                raise _smp_error(f"list element types are not identical: {_go(list(lists))}")
    if kind is None:
        raise _smp_error("no elements in any of the given slices")
    return kind


def _eq(a: Any, b: Any) -> bool:
    """Go's interface equality: same dynamic type and value (1 != 1.0, true != 1)."""
    return type(a) is type(b) and a == b


def _contains(items: list[Any], value: Any) -> bool:
    return any(_eq(v, value) for v in items)


def _dedupe(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in items:
        if not _contains(out, v):
            out.append(v)
    return out


def _no_merge_key(item: Any, merge_key: str) -> StatusError:
    return _smp_error(f"map: {_go(item)} does not contain declared merge key: {merge_key}")


def _go_kind(value: Any) -> str:
    kinds = {dict: "map", list: "slice", str: "string", int: "int64", float: "float64", bool: "bool"}
    return kinds.get(type(value), "invalid")


def _go(value: Any) -> str:
    """Go's %v for decoded JSON, used in upstream's error messages."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    return str(value)


# --- server-side apply (approximation) --------------------------------------

class _ApplyLoader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it: timestamps stay strings."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _apply_yaml(original: dict[str, Any], data: bytes, node: SchemaNode) -> dict[str, Any]:
    """apply-patch+yaml without managed fields: the applied config is merged into the object.

    Maps merge, ``list-type: map`` lists merge by their keys, ``set`` lists
    union, other lists are replaced. Fields dropped from a later applied config
    are not removed (that needs managedFields ownership).
    """
    try:
        applied = yaml.load(data, Loader=_ApplyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise bad_request(f"error decoding YAML: {e}") from None
    applied = _jsonable(applied)
    if applied is None:
        applied = {}
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: json: cannot unmarshal "
                          f"{_json_kind(applied)} into Go value of type map[string]interface {{}}")
    meta = applied.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return _apply_merge(original, applied, node)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_yaml_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    return str(value)


def _yaml_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def _apply_merge(live: dict[str, Any], applied: dict[str, Any], node: SchemaNode) -> dict[str, Any]:
    for key, value in applied.items():
        if value is None:
            live.pop(key, None)
            continue
        meta = node.field(key)
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and meta.strategy != "replace" \
                and meta.node.map_type != "atomic":
            live[key] = _apply_merge(current, value, meta.node)
        elif isinstance(value, list) and isinstance(current, list):
            live[key] = _apply_list(current, value, meta)
        else:
            live[key] = value
    return live


def _apply_list(live: list[Any], applied: list[Any], meta: FieldMeta) -> list[Any]:
    keys = meta.list_map_keys or ((meta.merge_key,) if meta.merge_key else ())
    if meta.list_type == "set" or (not meta.list_type and meta.strategy == "merge" and not keys):
        return _dedupe(live + applied)
    if not keys or meta.list_type not in ("map", ""):
        return applied
    if not all(isinstance(v, dict) for v in live + applied):
        return applied
    out = list(live)
    for item in applied:
        ident = tuple(item.get(k) for k in keys)
        for n, existing in enumerate(out):
            if tuple(existing.get(k) for k in keys) == ident:
                out[n] = _apply_merge(existing, item, meta.node)
                break
        else:
            out.append(item)
    return out
