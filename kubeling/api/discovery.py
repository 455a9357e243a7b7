"""Discovery documents: how kubectl and client-go learn which resources exist.

Two shapes, as a 1.32 server answers them:

* legacy discovery, one request per level: ``/api`` (APIVersions), ``/api/v1`` and
  ``/apis/<group>/<version>`` (APIResourceList, subresources as ``pods/status`` entries),
  ``/apis`` (APIGroupList) and ``/apis/<group>`` (APIGroup);
* aggregated discovery (``apidiscovery.k8s.io/v2``, or ``v2beta1`` for older clients), the
  whole tree of ``/api`` or ``/apis`` in one APIGroupDiscoveryList, chosen by the Accept
  header: client-go 1.32 sends ``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``
  first, then v2beta1, then plain ``application/json``.

Everything is computed from a Catalogue so CRDs show up as soon as they are added; bodies
are cached per catalogue generation.
"""

from __future__ import annotations

from typing import Any

from kubeling.api.catalogue import Catalogue, Resource

JSON = "application/json"
_AGGREGATED_GROUP = "apidiscovery.k8s.io"
_AGGREGATED_AS = "APIGroupDiscoveryList"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def aggregated_content_type(version: str) -> str:
    """The Content-Type of an aggregated discovery answer (client-go checks g, v and as)."""
    return f"{JSON};g={_AGGREGATED_GROUP};v={version};as={_AGGREGATED_AS}"


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for part in accept.split(","):
        items = [p.strip() for p in part.split(";")]
        if not items[0]:
            continue
        params: dict[str, str] = {}
        for p in items[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        out.append((items[0].lower(), params, q))
    return out


def negotiate_discovery(accept_header: str | None) -> str | None:
    """``"v2"``/``"v2beta1"`` if the client accepts aggregated discovery, else ``None``.

    The most preferred acceptable media range wins (highest q, then the client's order); a
    plain ``application/json`` or ``*/*`` ranked first means the legacy documents.
    Parameters may come in any order; an extra ``profile=nopeer`` is fine (we have no peers).
    """
    if not accept_header:
        return None
    ranked = sorted(
        ((q, -i, mt, params) for i, (mt, params, q) in enumerate(_media_ranges(accept_header)) if q > 0),
        reverse=True,
    )
    for _q, _i, mt, params in ranked:
        if params.get("g") == _AGGREGATED_GROUP or params.get("as") == _AGGREGATED_AS:
            if (
                mt == JSON
                and params.get("g") == _AGGREGATED_GROUP
                and params.get("as") == _AGGREGATED_AS
                and params.get("v") in AGGREGATED_VERSIONS
            ):
                return params["v"]
            continue  # e.g. the protobuf rendering, which we don't serve
        if mt in (JSON, "application/*", "*/*") and not params.get("as"):
            return None
    return None


# ---- legacy documents --------------------------------------------------------------------------


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_version_entry(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_group(catalogue: Catalogue, group: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``, or None if the group is not served."""
    versions = catalogue.versions(group)
    if not group or not versions:
        return None
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [_group_version_entry(group, v) for v in versions],
        "preferredVersion": _group_version_entry(group, versions[0]),
    }


def api_group_list(catalogue: Catalogue) -> dict[str, Any]:
    """``GET /apis``."""
    groups = []
    for g in catalogue.groups():
        body = api_group(catalogue, g)
        if body:
            groups.append({k: body[k] for k in ("name", "versions", "preferredVersion")})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _legacy_entries(r: Resource) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    if "list" in r.verbs and r.plural != "componentstatuses":
        entry["storageVersionHash"] = r.storage_version_hash()
    out = [entry]
    for name, sub in r.subresources.items():
        e: dict[str, Any] = {"name": f"{r.plural}/{name}", "singularName": "", "namespaced": r.namespaced}
        if (sub.group, sub.version) != (r.group, r.version):
            e["group"], e["version"] = sub.group, sub.version
        e["kind"] = sub.kind
        e["verbs"] = list(sub.verbs)
        out.append(e)
    return out


def api_resource_list(catalogue: Catalogue, group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``, or None if not served."""
    resources = catalogue.resources_in(group, version)
    if not resources:
        return None
    body: dict[str, Any] = {"kind": "APIResourceList"}
    if group:  # upstream's /api/v1 has no apiVersion; group versions do
        body["apiVersion"] = "v1"
    body["groupVersion"] = f"{group}/{version}" if group else version
    body["resources"] = [e for r in resources for e in _legacy_entries(r)]
    return body


# ---- aggregated discovery ----------------------------------------------------------------------


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _aggregated_resource(r: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": _gvk(r.group, r.version, r.kind),
        "scope": r.scope,
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    if r.subresources:
        out["subresources"] = [
            {"subresource": name, "responseKind": _gvk(s.group, s.version, s.kind), "verbs": list(s.verbs)}
            for name, s in r.subresources.items()
        ]
    return out


def _aggregated_group(catalogue: Catalogue, group: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"creationTimestamp": None}
    if group:
        metadata = {"name": group, "creationTimestamp": None}
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": v,
                "resources": [_aggregated_resource(r) for r in catalogue.resources_in(group, v)],
                "freshness": "Current",
            }
            for v in catalogue.versions(group)
        ],
    }


def aggregated_discovery(catalogue: Catalogue, *, legacy: bool, version: str = "v2") -> dict[str, Any]:
    """The APIGroupDiscoveryList for ``/api`` (``legacy=True``, the core group) or ``/apis``."""
    groups = [""] if legacy else catalogue.groups()
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{_AGGREGATED_GROUP}/{version}",
        "metadata": {},
        "items": [_aggregated_group(catalogue, g) for g in groups if catalogue.versions(g)],
    }


# ---- one entry point for the HTTP layer --------------------------------------------------------

_cache: dict[tuple[int, int, str, str], tuple[dict[str, Any], str]] = {}


def discovery_response(
    catalogue: Catalogue, path: str, accept: str | None, *, server_address: str
) -> tuple[dict[str, Any], str] | None:
    """(body, content type) for a discovery path, or None when the path is not one (404).

    Paths: ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``
    (a trailing slash is tolerated). ``/api`` and ``/apis`` answer aggregated discovery when
    ``accept`` asks for it. Bodies are cached per catalogue generation; callers must not mutate them.
    """
    parts = [p for p in path.split("/") if p]
    agg = negotiate_discovery(accept) if len(parts) == 1 else None
    key = (id(catalogue), catalogue.generation, "/".join(parts), agg or "")
    hit = _cache.get(key)
    if hit is not None:
        return hit
    body: dict[str, Any] | None = None
    content_type = JSON
    if parts == ["api"]:
        if agg:
            body, content_type = aggregated_discovery(catalogue, legacy=True, version=agg), aggregated_content_type(agg)
        else:
            body = api_versions(server_address)
    elif parts == ["apis"]:
        if agg:
            body, content_type = aggregated_discovery(catalogue, legacy=False, version=agg), aggregated_content_type(agg)
        else:
            body = api_group_list(catalogue)
    elif len(parts) == 2 and parts[0] == "api":
        body = api_resource_list(catalogue, "", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        body = api_group(catalogue, parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        body = api_resource_list(catalogue, parts[1], parts[2])
    if body is None:
        return None
    if parts != ["api"] or agg:  # /api embeds the server address, which callers may vary
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = (body, content_type)
    return body, content_type
