"""CustomResourceDefinition -> served resources: the CRD's validation, status and catalogue rows.

Every served version of a CRD becomes one catalogue ``Resource`` (storage under
``/registry/<group>/<plural>``, as upstream) and one ``CustomVersion`` here, which carries what
the generic registry cannot know: the structural schema, subresources, printer columns,
selectable fields, deprecation and the conversion strategy. ``CUSTOM`` is the lookup every
dispatch point uses to tell a custom resource from a built-in one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from kubeling.api.catalogue import Resource, SubresourceInfo, version_priority
from kubeling.api.errors import FieldError, invalid, required, unsupported
from kubeling.apiextensions import cel

Obj = dict[str, Any]
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
CR_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass
class CustomVersion:
    """One served version of a CRD, with everything the request path needs."""

    crd_name: str
    group: str
    version: str
    kind: str
    plural: str
    schema: Obj
    storage_version: str
    status: bool = False
    scale: Obj | None = None
    columns: list[Obj] = field(default_factory=list)
    selectable_fields: list[str] = field(default_factory=list)
    deprecated: bool = False
    deprecation_warning: str | None = None
    conversion: Obj = field(default_factory=dict)
    preserve_root: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def definition_name(self) -> str:
        """Upstream's OpenAPI name: reversed group, version, kind (com.example.stable.v1.CronTab)."""
        return ".".join(reversed(self.group.split("."))) + f".{self.version}.{self.kind}"

    def warning(self) -> str | None:
        if not self.deprecated:
            return None
        return self.deprecation_warning or f"{self.api_version} {self.kind} is deprecated"


# (group, version, plural) -> CustomVersion, for every served custom resource
CUSTOM: dict[tuple[str, str, str], CustomVersion] = {}


def custom_for(resource: Any) -> CustomVersion | None:
    if not isinstance(resource, Resource):
        return None
    return CUSTOM.get((resource.group, resource.version, resource.plural))


def storage_version(crd: Obj) -> str:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("storage"):
            return v.get("name", "")
    return ""


def build(crd: Obj) -> list[tuple[Resource, CustomVersion]]:
    """The catalogue rows of a CRD's served versions."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    singular = names.get("singular") or kind.lower()
    stored = f"{group}/{storage_version(crd)}"
    served = [v for v in spec.get("versions") or [] if v.get("served")]
    preferred = min((v["name"] for v in served), key=version_priority, default="")
    out = []
    for v in served:
        subs_spec = v.get("subresources") or {}
        subs: dict[str, SubresourceInfo] = {}
        if subs_spec.get("scale") is not None:
            subs["scale"] = SubresourceInfo("scale", "autoscaling", "v1", "Scale", ("get", "patch", "update"))
        if subs_spec.get("status") is not None:
            subs["status"] = SubresourceInfo("status", group, v["name"], kind, ("get", "patch", "update"))
        res = Resource(group=group, version=v["name"], kind=kind, plural=plural, singular=singular,
                       namespaced=spec.get("scope") == "Namespaced", verbs=CR_VERBS,
                       short_names=tuple(names.get("shortNames") or ()),
                       categories=tuple(names.get("categories") or ()), subresources=dict(sorted(subs.items())),
                       schema_ref=None, storage_prefix=f"/registry/{group}/{plural}", storage_version=stored,
                       preferred=v["name"] == preferred)
        schema = ((v.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object",
                                                                     "x-kubernetes-preserve-unknown-fields": True}
        info = CustomVersion(
            crd_name=crd["metadata"]["name"], group=group, version=v["name"], kind=kind, plural=plural,
            schema=schema, storage_version=stored, status=subs_spec.get("status") is not None,
            scale=subs_spec.get("scale"), columns=list(v.get("additionalPrinterColumns") or []),
            selectable_fields=[f.get("jsonPath", "").lstrip(".") for f in v.get("selectableFields") or []],
            deprecated=bool(v.get("deprecated")), deprecation_warning=v.get("deprecationWarning"),
            conversion=dict(spec.get("conversion") or {"strategy": "None"}),
            preserve_root=bool(schema.get("x-kubernetes-preserve-unknown-fields")))
        out.append((res, info))
    return out


# ---- validation of the CRD itself ----------------------------------------------------------


def _structural_errors(s: Any, path: str, *, root: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(s, dict):
        return errs
    if not s.get("type") and not s.get("x-kubernetes-int-or-string") \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        if root:
            errs.append(required(f"{path}.type", "must not be empty at the root"))
        elif s.get("properties") or s.get("items") or s.get("additionalProperties") is not None:
            errs.append(required(f"{path}.type", "must not be empty for specified object fields"))
    if root and s.get("type") and s.get("type") != "object":
        errs.append(invalid(f"{path}.type", s.get("type"), 'must be object at the root'))
    for k, v in (s.get("properties") or {}).items():
        errs += _structural_errors(v, f"{path}.properties[{k}]")
    if isinstance(s.get("items"), dict):
        errs += _structural_errors(s["items"], f"{path}.items")
    elif s.get("type") == "array" and s.get("items") is None:
        errs.append(required(f"{path}.items", "must be specified"))
    if isinstance(s.get("additionalProperties"), dict):
        errs += _structural_errors(s["additionalProperties"], f"{path}.additionalProperties")
        if s.get("properties"):
            errs.append(FieldError("Forbidden", f"{path}.additionalProperties",
                                   "additionalProperties and properties are mutual exclusive"))
    return errs


def validate(crd: Obj) -> list[FieldError]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    errs: list[FieldError] = []
    name = (crd.get("metadata") or {}).get("name", "")
    if not group:
        errs.append(required("spec.group"))
    elif "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    plural, kind = names.get("plural") or "", names.get("kind") or ""
    if name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not plural:
        errs.append(required("spec.names.plural"))
    elif not _DNS_LABEL.fullmatch(plural):
        errs.append(invalid("spec.names.plural", plural,
                            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                            "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
    if not kind:
        errs.append(required("spec.names.kind"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(unsupported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions or sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    seen: set[str] = set()
    conversion = (spec.get("conversion") or {}).get("strategy") or "None"
    if conversion not in ("None", "Webhook"):
        errs.append(unsupported("spec.conversion.strategy", conversion, ["None", "Webhook"]))
    for i, v in enumerate(versions):
        vp = f"spec.versions[{i}]"
        vname = v.get("name") or ""
        if not vname:
            errs.append(required(f"{vp}.name"))
        if vname in seen:
            errs.append(invalid("spec.versions", versions, "must contain unique version names"))
        seen.add(vname)
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        sp = f"{vp}.schema.openAPIV3Schema"
        if schema is None:
            errs.append(required(sp, "schemas are required"))
            continue
        errs += _structural_errors(schema, sp, root=True)
        errs += cel.compile_errors(schema, sp)
        subs = v.get("subresources") or {}
        scale = subs.get("scale")
        if isinstance(scale, dict):
            for key in ("specReplicasPath", "statusReplicasPath"):
                if not scale.get(key):
                    errs.append(required(f"{vp}.subresources.scale.{key}"))
    if not any(v.get("served") for v in versions) and versions:
        errs.append(invalid("spec.versions", versions, "must have at least one served version"))
    return errs


# ---- status -----------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(old: list[Obj], type_: str, status: str, reason: str, message: str) -> Obj:
    prev = next((c for c in old if c.get("type") == type_), None)
    when = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get(
        "lastTransitionTime") else _now()
    return {"type": type_, "status": status, "lastTransitionTime": when, "reason": reason, "message": message}


def compute_status(crd: Obj, conflict: str | None = None) -> Obj:
    """acceptedNames, conditions (NamesAccepted, Established) and storedVersions, as upstream's controllers."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    old = crd.get("status") or {}
    old_conds = list(old.get("conditions") or [])
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    stored = list(old.get("storedVersions") or [])
    sv = storage_version(crd)
    if sv and sv not in stored:
        stored.append(sv)
    if conflict:
        conds = [_condition(old_conds, "NamesAccepted", "False", "NameConflict", conflict),
                 _condition(old_conds, "Established", "False", "NotAccepted", "not all names are accepted")]
        accepted = old.get("acceptedNames") or {"plural": "", "kind": ""}
    else:
        conds = [_condition(old_conds, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
                 _condition(old_conds, "Established", "True", "InitialNamesAccepted",
                            "the initial names have been accepted")]
        accepted = names
    if (crd.get("metadata") or {}).get("deletionTimestamp"):
        conds.append(_condition(old_conds, "Terminating", "True", "InstanceDeletionInProgress",
                                "CustomResource deletion is in progress"))
    return {"conditions": conds, "acceptedNames": accepted, "storedVersions": stored}


def names_conflict(crd: Obj, catalogue: Any) -> str | None:
    """A plural or kind another resource of the group already uses."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    mine = crd["metadata"]["name"]
    for r in catalogue.all():
        if r.group != group:
            continue
        info = CUSTOM.get((r.group, r.version, r.plural))
        if info is not None and info.crd_name == mine:
            continue
        if r.plural == names.get("plural"):
            return f'"{r.plural}" is already in use'
        if r.kind == names.get("kind"):
            return f'"{r.kind}" is already in use'
    return None
