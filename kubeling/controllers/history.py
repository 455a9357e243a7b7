"""ControllerRevision history shared by the DaemonSet and StatefulSet controllers.

Upstream keeps every distinct pod template of a workload as a ControllerRevision named
``<owner>-<hash>``: the hash (fnv-1a 32 over the revision data, then the collision count, rendered
with ``rand.SafeEncodeString``) also labels the pods as ``controller-revision-hash``. Revisions carry
a number one above the highest so far; going back to an old template reuses its object and raises
its number (a rollback to revision 1 of two yields revision 3). Old revisions beyond
``revisionHistoryLimit`` that no live pod uses are deleted, oldest first.

``kubectl rollout undo`` compares the revision's ``data`` byte for byte with a patch it computes
from the live object, so :func:`go_json` reproduces Go's ``encoding/json`` output.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from kubeling.client.rest import ApiError, Client

CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"
RESOURCE = "controllerrevisions.apps"

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


# -- encoding and hashing --------------------------------------------------------------------------

def go_json(obj: Any) -> bytes:
    """Go's ``json.Marshal`` of a decoded map: sorted keys, compact, ``<>&`` and U+2028/9 escaped."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text.encode()


def fnv32a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """apimachinery's ``rand.SafeEncodeString``: no vowels, no look-alike characters."""
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in s)


def hash_revision_data(data: bytes, collision_count: int | None = None) -> str:
    """The ``controller-revision-hash`` of revision data under a collision count."""
    h = fnv32a(data)
    if collision_count is not None:
        h = fnv32a(int(collision_count & 0xFFFFFFFF).to_bytes(4, "little"), h)
    return safe_encode_string(str(h))


def revision_name(owner_name: str, hash_: str) -> str:
    return f"{owner_name}-{hash_}"


def template_patch(owner: dict[str, Any]) -> dict[str, Any]:
    """``{"spec":{"template":{...,"$patch":"replace"}}}``: what DaemonSets and StatefulSets store.

    The template is shaped as Go marshals a typed PodTemplateSpec: ``creationTimestamp: null``
    in its metadata and ``resources: {}`` on every container.
    """
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    meta = template.setdefault("metadata", {})
    meta.setdefault("creationTimestamp", None)
    spec = template.get("spec") or {}
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            c.setdefault("resources", {})
    template["$patch"] = "replace"
    # kubectl compares these bytes with its own Go-marshalled patch, whose map keys are sorted
    return _sorted({"spec": {"template": template}})


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def template_patch_bytes(owner: dict[str, Any]) -> bytes:
    return go_json(template_patch(owner))


def revision_data_bytes(revision: dict[str, Any]) -> bytes:
    data = revision.get("data")
    if isinstance(data, (bytes, str)):
        return data.encode() if isinstance(data, str) else data
    return go_json(data)


def matches_template(owner: dict[str, Any], revision: dict[str, Any]) -> bool:
    """upstream's daemon ``Match``: the owner's template patch equals the revision data."""
    return template_patch_bytes(owner) == revision_data_bytes(revision)


def equal_revision(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """history.EqualRevision: same hash label, then same data."""
    if a is None or b is None:
        return a is b
    la = ((a.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
    lb = ((b.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
    if la and lb and la != lb:
        return False
    return revision_data_bytes(a) == revision_data_bytes(b)


# -- revision numbers ------------------------------------------------------------------------------

def revision_number(revision: dict[str, Any]) -> int:
    return int(revision.get("revision") or 0)


def max_revision(revisions: Iterable[dict[str, Any]]) -> int:
    return max((revision_number(r) for r in revisions), default=0)


def next_revision(revisions: Iterable[dict[str, Any]]) -> int:
    return max_revision(revisions) + 1


def sort_by_revision(revisions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first; equal numbers by creation time then name, as upstream's byRevision."""
    return sorted(revisions, key=lambda r: (revision_number(r),
                                            (r.get("metadata") or {}).get("creationTimestamp") or "",
                                            (r.get("metadata") or {}).get("name") or ""))


def controller_ref(owner: dict[str, Any]) -> dict[str, Any]:
    """metav1.NewControllerRef."""
    meta = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def new_revision(owner: dict[str, Any], *, data: dict[str, Any], revision: int,
                 template_labels: dict[str, str] | None, collision_count: int | None,
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A ControllerRevision owned by ``owner`` (kind filled in), named and labelled by its hash."""
    raw = go_json(data)
    hash_ = hash_revision_data(raw, collision_count)
    # kubectl compares the served bytes of ``data``: store its keys in sorted order so a server that
    # keeps insertion order serves Go's encoding.
    data = json.loads(raw)
    labels = dict(template_labels or {})
    labels[CONTROLLER_REVISION_HASH_LABEL] = hash_
    meta: dict[str, Any] = {
        "name": revision_name(owner["metadata"]["name"], hash_),
        "namespace": owner["metadata"].get("namespace"),
        "labels": labels,
        "ownerReferences": [controller_ref(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
            "data": data, "revision": revision}


def revision_hash(revision: dict[str, Any]) -> str:
    labels = (revision.get("metadata") or {}).get("labels") or {}
    return labels.get(CONTROLLER_REVISION_HASH_LABEL) or revision["metadata"]["name"]


def revisions_to_prune(old: Iterable[dict[str, Any]], limit: int, live_hashes: set[str]) -> list[dict[str, Any]]:
    """Old revisions to delete so at most ``limit`` remain, oldest first, sparing those pods still use."""
    old = sort_by_revision(old)
    to_kill = len(old) - max(limit, 0)
    doomed: list[dict[str, Any]] = []
    for rev in old:
        if to_kill <= 0:
            break
        if revision_hash(rev) in live_hashes:
            continue
        doomed.append(rev)
        to_kill -= 1
    return doomed


# -- API writes ------------------------------------------------------------------------------------

async def create_revision(client: Client, revision: dict[str, Any]) -> dict[str, Any]:
    ns = revision["metadata"].get("namespace")
    return await client.create(RESOURCE, revision, namespace=ns)


async def update_revision_number(client: Client, revision: dict[str, Any], number: int) -> dict[str, Any]:
    """Raise (or set) a revision's number, as a rollback to an old template does."""
    updated = copy.deepcopy(revision)
    updated["revision"] = number
    return await client.update(RESOURCE, updated, namespace=revision["metadata"].get("namespace"))


async def delete_revision(client: Client, revision: dict[str, Any]) -> None:
    try:
        await client.delete(RESOURCE, revision["metadata"]["name"], namespace=revision["metadata"].get("namespace"))
    except ApiError as exc:
        if exc.code != 404:
            raise


async def create_with_collisions(client: Client, owner: dict[str, Any], *, data: dict[str, Any], revision: int,
                                 template_labels: dict[str, str] | None, collision_count: int,
                                 annotations: dict[str, str] | None = None,
                                 max_attempts: int = 10) -> tuple[dict[str, Any], int]:
    """history.CreateControllerRevision: create, bumping the collision count while a different
    revision holds the name. Returns the stored revision and the collision count used."""
    count = collision_count
    for _ in range(max_attempts):
        rev = new_revision(owner, data=data, revision=revision, template_labels=template_labels,
                           collision_count=count, annotations=annotations)
        try:
            return await create_revision(client, rev), count
        except ApiError as exc:
            if exc.code != 409:
                raise
            existing = await client.get(RESOURCE, rev["metadata"]["name"], namespace=rev["metadata"]["namespace"])
            if equal_revision(existing, rev):
                return existing, count
            count += 1
    raise RuntimeError(f"too many hash collisions creating a revision of {owner['metadata']['name']}")
