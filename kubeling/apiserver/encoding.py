"""Request bodies in, response bodies out: JSON/YAML decoding and the `as=` conversions.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` (server-side
printing) and controllers may ask for ``as=PartialObjectMetadata``; everything
else is plain JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from kubeling.api import errors

try:  # the C loader is an order of magnitude faster for big manifests
    _BaseLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader


class _YamlLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """A YAML body decoded as upstream's YAML-to-JSON does: an unquoted timestamp stays the string it
    is (creationTimestamp: 2024-01-01T00:00:00Z), never a Python datetime, so a decoded body holds
    nothing but JSON values."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()}

MAX_BODY = 3 * 1024 * 1024


def decode_body(raw: bytes, content_type: str) -> Any:
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype == "application/vnd.kubernetes.protobuf":
        from kubeling.apiserver import protobuf

        return protobuf.decode(raw)
    if "protobuf" in ctype:
        raise errors.StatusError(415, "UnsupportedMediaType",
                                 f'the body of the request was in an unknown format - accepted media types '
                                 f'include: application/json, application/yaml (got "{ctype}")')
    if not raw.strip():
        raise errors.bad_request("the body of the request was empty")
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.load(raw, Loader=_YamlLoader)  # noqa: S506 - CSafeLoader
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def wants(accept: str, as_kind: str) -> bool:
    """True when the Accept header asks for ``as=<as_kind>`` in meta.k8s.io v1 (or v1beta1)."""
    if not accept or "as=" not in accept:
        return False  # plain JSON (nearly every request): no parsing
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k] = v
        if params.get("as") == as_kind and params.get("g") == "meta.k8s.io" and \
                params.get("v") in ("v1", "v1beta1"):
            return True
    return False


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def partial_metadata_list(lst: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": lst["metadata"],
            "items": [partial_metadata(o) for o in lst["items"]]}
