"""Strategies for custom objects and for CustomResourceDefinitions themselves.

Custom objects: ``metadata.generation`` always counts spec changes; with the status
subresource the main endpoint ignores status and ``/status`` ignores everything else;
validation is ObjectMeta + the structural schema + CEL rules (transition rules see ``oldSelf``).
CRDs: the built-in strategy plus the CRD's own validation, its status (NamesAccepted,
Established, storedVersions) and the cleanup finalizer.
"""

from __future__ import annotations

from typing import Any

from kubeling.api.errors import FieldError, invalid
from kubeling.api.validation import meta as vmeta
from kubeling.apiextensions import cel, crd, structural
from kubeling.apiextensions.crd import CustomVersion

Obj = dict[str, Any]

_STATUS_OWN = frozenset(("status", "metadata", "apiVersion", "kind"))  # what a status write may send


class CustomStrategy:
    default_propagation = "Background"

    def __init__(self, info: CustomVersion, *, namespaced: bool, subresource: str | None) -> None:
        self.info = info
        self.namespaced = namespaced
        self.subresource = subresource

    # -- prepare ------------------------------------------------------------------------
    def prepare_for_create(self, obj: Obj) -> None:
        if self.info.status:
            obj.pop("status", None)
        obj.setdefault("metadata", {})["generation"] = 1

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        # ``new`` takes old's values without copies, as the built-in strategies do: the registry
        # hands strategies an ``old`` decoded for this request alone and mutates neither object's
        # nested values afterwards (a mutating webhook's patch replaces them, it does not edit them)
        meta = new.setdefault("metadata", {})
        if self.subresource == "status":
            for key in list(new):
                if key not in _STATUS_OWN:
                    del new[key]
            for key, value in old.items():
                if key not in _STATUS_OWN:
                    new[key] = value
            om = old.get("metadata") or {}
            for key in ("labels", "annotations", "finalizers", "ownerReferences", "generation"):
                if key in om:
                    meta[key] = om[key]
                else:
                    meta.pop(key, None)
            return
        if self.info.status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        skip = ("metadata", "status") if self.info.status else ("metadata",)
        changed = {k: v for k, v in new.items() if k not in skip} != {k: v for k, v in old.items() if k not in skip}
        gen = (old.get("metadata") or {}).get("generation") or 1
        meta["generation"] = gen + 1 if changed else gen

    # -- validate -----------------------------------------------------------------------
    def _schema_errors(self, obj: Obj, old: Any = cel._MISSING) -> list[FieldError]:
        errs = structural.validate(self.info.schema, obj)
        if not errs:
            errs = cel.evaluate(self.info.schema, obj, old)
        return errs

    def validate(self, obj: Obj) -> list[FieldError]:
        errs = vmeta.validate_object_meta(obj, namespaced=self.namespaced, name_fn=vmeta.dns1123_subdomain)
        return errs + self._schema_errors(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = vmeta.validate_object_meta_update(new, old)
        errs += vmeta.validate_object_meta(new, namespaced=self.namespaced, name_fn=vmeta.dns1123_subdomain)
        return errs + self._schema_errors(new, old)


class CrdStrategy:
    """Wraps the built-in CRD strategy with the CRD's own rules and status."""

    def __init__(self, base: Any, catalogue: Any, *, subresource: str | None) -> None:
        self.base = base
        self.catalogue = catalogue
        self.subresource = subresource

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def prepare_for_create(self, obj: Obj) -> None:
        self.base.prepare_for_create(obj)
        meta = obj.setdefault("metadata", {})
        fins = list(meta.get("finalizers") or [])
        if crd.CRD_FINALIZER not in fins:
            meta["finalizers"] = [*fins, crd.CRD_FINALIZER]
        meta["generation"] = 1
        obj["status"] = crd.compute_status(obj, crd.names_conflict(obj, self.catalogue))

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        self.base.prepare_for_update(new, old)
        if self.subresource == "status":
            return
        meta = new.setdefault("metadata", {})
        gen = (old.get("metadata") or {}).get("generation") or 1
        meta["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen
        new["status"] = crd.compute_status({**new, "status": old.get("status") or {}},
                                           crd.names_conflict(new, self.catalogue))

    def validate(self, obj: Obj) -> list[FieldError]:
        return self.base.validate(obj) + crd.validate(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = self.base.validate_update(new, old)
        if self.subresource == "status":
            return errs
        errs += crd.validate(new)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        for key in ("group", "scope"):
            if key in os_ and ns.get(key) != os_.get(key):
                errs.append(invalid(f"spec.{key}", ns.get(key), "field is immutable"))
        stored = (old.get("status") or {}).get("storedVersions") or []
        names = {v.get("name") for v in ns.get("versions") or []}
        for i, v in enumerate(stored):
            if v not in names:
                errs.append(invalid(f"status.storedVersions[{i}]", v,
                                    "must appear in spec.versions"))
        return errs
