"""Per-kind registry strategies: what create/update may change, and semantic validation.

Mirrors upstream's pkg/registry/*/strategy.go: PrepareForCreate clears status and
sets generation 1, PrepareForUpdate keeps status and bumps generation when the
spec changed, the status strategy does the reverse; Validate/ValidateUpdate give
field errors with upstream's messages. Strategies are plain classes over dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubeling.api import kubeling_kinds, schema
from kubeling.api.errors import FieldError, forbidden
from kubeling.api.validation import apps, core
from kubeling.api.validation import meta as vmeta
from kubeling.api.validation.pod import pod_qos_class, validate_pod_spec

Obj = dict[str, Any]
Validator = Callable[[Obj], list[FieldError]]
UpdateValidator = Callable[[Obj, Obj], list[FieldError]]

__all__ = ["Strategy", "StatusStrategy", "strategy_for", "pod_qos_class"]

CLUSTER_SCOPED = {
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
    "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "CustomResourceDefinition",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "IngressClass",
    "RuntimeClass", "CertificateSigningRequest", "ComponentStatus", "FlowSchema",
    "PriorityLevelConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "TokenReview", "SelfSubjectAccessReview", "SubjectAccessReview", "SelfSubjectRulesReview",
}
# kinds whose metadata.generation tracks spec changes
GENERATION_KINDS = {"DaemonSet", "StatefulSet", "Deployment", "ReplicaSet", "ReplicationController", "Job",
                    "CronJob", "PodDisruptionBudget", "NetworkPolicy", "Ingress", "CustomResourceDefinition",
                    "HorizontalPodAutoscaler", kubeling_kinds.KIND}
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def _kind_of(resource: Any) -> tuple[str, str, str]:
    if isinstance(resource, tuple):
        return resource
    return resource.group, resource.version, resource.kind


def _status_zero(resource: Any) -> Obj:
    """An empty status as Go serializes it: non-omitempty integers appear as 0."""
    root = schema.root_node(resource)
    st = root.props.get("status") if root is not None and root.kind == schema.OBJ else None
    if st is None or st.kind != schema.OBJ:
        return {}
    return {name: 0 for name in st.required if st.props.get(name) is not None and st.props[name].kind == schema.INT}


def _shared(old: Obj, key: str) -> Any:
    """``old[key]`` for the new object, without a copy.

    The registry hands strategies an ``old`` it decoded for this request alone and never mutates
    either object's nested values afterwards, so the new object may share them (a deep copy of a
    pod's spec costs more than the rest of its update together).
    """
    return old[key]


class Strategy:
    """The main-resource strategy of one kind."""

    def __init__(self, resource: Any, *, namespaced: bool | None = None,
                 name_fn: Callable[[str], list[str]] = vmeta.dns1123_subdomain,
                 validator: Validator | None = None, update_validator: UpdateValidator | None = None,
                 has_status: bool = True) -> None:
        self.resource = resource
        self.group, self.version, self.kind = _kind_of(resource)
        if namespaced is None:
            namespaced = getattr(resource, "namespaced", None)
            if namespaced is None:
                namespaced = self.kind not in CLUSTER_SCOPED
        self.namespaced = namespaced
        self.name_fn = name_fn
        self.validator = validator
        self.update_validator = update_validator
        self.has_status = has_status
        self.uses_generation = self.kind in GENERATION_KINDS
        # rules that read nothing but the spec may skip an update that leaves it as stored
        self._spec_only_rules = validator in _SPEC_ONLY_RULES and (
            update_validator is None or update_validator in _SPEC_ONLY_RULES)
        # looked up once, not on every write: the per-kind hooks and the empty status's shape
        self._create_hook: Callable[[Obj], None] | None = getattr(self, f"_create_{self.kind}", None)
        self._update_hook: Callable[[Obj, Obj], None] | None = getattr(self, f"_update_{self.kind}", None)
        self._zero_status: Obj | None = None

    # -- create -------------------------------------------------------------------------
    def prepare_for_create(self, obj: Obj) -> None:
        meta = obj.setdefault("metadata", {})
        if self.has_status:
            zero = self._zero_status
            if zero is None:
                zero = self._zero_status = _status_zero(self.resource)
            obj["status"] = dict(zero)  # flat: ints only
        if self.uses_generation:
            meta["generation"] = 1
        hook = self._create_hook
        if hook:
            hook(obj)

    def _create_Pod(self, obj: Obj) -> None:  # noqa: N802
        status: Obj = {"phase": "Pending", "qosClass": pod_qos_class(obj)}
        if (obj.get("spec") or {}).get("schedulingGates"):
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                                     "message": "Scheduling is blocked due to non-empty scheduling gates",
                                     "lastProbeTime": None, "lastTransitionTime": None}]
        obj["status"] = status

    def _create_Namespace(self, obj: Obj) -> None:  # noqa: N802
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        fins = spec.get("finalizers") or []
        if "kubernetes" not in fins:
            fins = [*fins, "kubernetes"]
        spec["finalizers"] = fins
        name = obj["metadata"].get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    def _create_Service(self, obj: Obj) -> None:  # noqa: N802
        obj["status"] = {"loadBalancer": {}}

    def _create_PersistentVolumeClaim(self, obj: Obj) -> None:  # noqa: N802
        obj["status"] = {"phase": "Pending"}

    def _create_PersistentVolume(self, obj: Obj) -> None:  # noqa: N802
        obj["status"] = {"phase": "Pending"}

    def _create_DaemonSet(self, obj: Obj) -> None:  # noqa: N802
        ann = obj["metadata"].setdefault("annotations", {})
        try:
            gen = int(ann.get(TEMPLATE_GENERATION, "0"))
        except ValueError:
            gen = 0
        ann[TEMPLATE_GENERATION] = str(max(gen, 1))

    # -- update -------------------------------------------------------------------------
    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if self.has_status:
            if "status" in old:
                new["status"] = _shared(old, "status")
            else:
                new.pop("status", None)
        if self.uses_generation:
            meta = new.setdefault("metadata", {})
            gen = (old.get("metadata") or {}).get("generation") or 0
            changed = new.get("spec") != old.get("spec")
            if self.kind == "Deployment":
                changed = changed or meta.get("annotations") != (old.get("metadata") or {}).get("annotations")
            meta["generation"] = gen + 1 if changed else gen
        hook = self._update_hook
        if hook:
            hook(new, old)

    def _update_DaemonSet(self, new: Obj, old: Obj) -> None:  # noqa: N802
        old_ann = (old.get("metadata") or {}).get("annotations") or {}
        try:
            gen = int(old_ann.get(TEMPLATE_GENERATION, "1"))
        except ValueError:
            gen = 1
        if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            gen += 1
        new["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = str(gen)

    def _update_Namespace(self, new: Obj, old: Obj) -> None:  # noqa: N802
        # finalizers change only through the finalize subresource
        if "spec" in old:
            new["spec"] = _shared(old, "spec")
        name = new["metadata"].get("name")
        if name:
            new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    # -- validation -----------------------------------------------------------------------
    def validate(self, obj: Obj) -> list[FieldError]:
        errs = vmeta.validate_object_meta(obj, namespaced=self.namespaced, name_fn=self.name_fn)
        if self.validator is not None:
            errs.extend(self.validator(obj))
        return errs

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        nm = new.get("metadata")
        if type(nm) is dict and nm == old.get("metadata"):
            # metadata sent back as read (a Lease renewal, a kubelet's status PUT): nothing immutable
            # changed, and the stored metadata passed validation when it was written
            errs: list[FieldError] = []
        else:
            errs = vmeta.validate_object_meta_update(new, old)
            if not _same_metadata(new, old):  # unchanged metadata passes again, as above
                errs.extend(vmeta.validate_object_meta(new, namespaced=self.namespaced, name_fn=self.name_fn))
        if self.validator is None and self.update_validator is None:
            return errs
        if self._spec_only_rules and _same_spec(new, old):
            # the kind's rules read only the spec, and this one is the stored one: it passed them when
            # it was written, and the update rules find nothing in a spec that did not change
            return errs
        if self.validator is not None:
            errs.extend(self.validator(new))
        if self.update_validator is not None:
            errs.extend(self.update_validator(new, old))
        return errs


def _same_spec(new: Obj, old: Obj) -> bool:
    spec = old.get("spec")
    # identical (a status write shares old's) or equal; never an absent spec, which fails validation
    return type(spec) is dict and (new.get("spec") is spec or new.get("spec") == spec)


def _same_metadata(new: Obj, old: Obj) -> bool:
    """Equal metadata, resourceVersion aside (the client's copy may carry an older one)."""
    nm, om = new.get("metadata"), old.get("metadata")
    if not isinstance(nm, dict) or not isinstance(om, dict):
        return False
    if nm.get("resourceVersion", _MISSING) == om.get("resourceVersion", _MISSING):
        return nm == om  # one comparison in C
    if len(nm.keys() - {"resourceVersion"}) != len(om.keys() - {"resourceVersion"}):
        return False
    return all(k == "resourceVersion" or om.get(k, _MISSING) == v for k, v in nm.items())


_MISSING = object()
_STATUS_OWN = frozenset(("status", "metadata", "apiVersion", "kind"))  # what a status write may send


class StatusStrategy(Strategy):
    """The /status strategy: keeps the spec (and user metadata), takes the new status."""

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        for key in old:
            if key not in _STATUS_OWN:
                new[key] = _shared(old, key)
        for key in list(new):
            if key not in old and key not in _STATUS_OWN:
                del new[key]
        nm, om = new.setdefault("metadata", {}), old.get("metadata") or {}
        for key in ("labels", "annotations", "finalizers", "ownerReferences", "generation", "deletionTimestamp"):
            if key in om:
                nm[key] = _shared(om, key)
            else:
                nm.pop(key, None)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        nm = new.get("metadata")
        # metadata as read (the usual status write) changes nothing immutable
        errs = [] if type(nm) is dict and nm == old.get("metadata") else vmeta.validate_object_meta_update(new, old)
        if self.kind == "Pod":
            phase = (new.get("status") or {}).get("phase")
            if phase and phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
                from kubeling.api.errors import unsupported
                errs.append(unsupported("status.phase", phase,
                                        ["Pending", "Running", "Succeeded", "Failed", "Unknown"]))
        return errs


# ---- per-kind rules ---------------------------------------------------------------------

POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                  "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                  "(allow it to be set to 1 if it was previously negative)")


def _validate_pod(obj: Obj) -> list[FieldError]:
    return validate_pod_spec(obj.get("spec"), "spec")


def _validate_pod_update(new: Obj, old: Obj) -> list[FieldError]:
    # shallow copies: only top-level keys are dropped and containers replaced, never mutated in place
    ns, os_ = dict(new.get("spec") or {}), dict(old.get("spec") or {})
    # mutable: container images, activeDeadlineSeconds, tolerations additions, scheduling gates removal
    for key in ("containers", "initContainers"):
        new_list, old_list = ns.get(key) or [], os_.get(key) or []
        if new_list and old_list:  # compare the new containers as if they kept the old images
            masked = [dict(nc, image=oc.get("image")) for nc, oc in zip(new_list, old_list, strict=False)]
            masked.extend(new_list[len(masked):])
            ns[key] = masked
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        ns.pop(key, None)
        os_.pop(key, None)
    if (os_.get("schedulingGates") or []) and len(ns.get("schedulingGates") or []) <= len(os_["schedulingGates"]):
        ns.pop("schedulingGates", None)
        os_.pop("schedulingGates", None)
    if not os_.get("nodeName"):  # binding sets nodeName once
        ns.pop("nodeName", None)
        os_.pop("nodeName", None)
    errs: list[FieldError] = []
    if ns != os_:
        errs.append(forbidden("spec", POD_UPDATE_MSG))
    old_tols = (old.get("spec") or {}).get("tolerations") or []
    new_tols = (new.get("spec") or {}).get("tolerations") or []
    if any(t not in new_tols for t in old_tols):
        errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its "
                              "tolerationSeconds"))
    return errs


def _ds_update(new: Obj, old: Obj) -> list[FieldError]:
    return apps.validate_selector_immutable(new, old)


def _sts_update(new: Obj, old: Obj) -> list[FieldError]:
    return apps.validate_statefulset_update(new, old)


def _configmap_update(new: Obj, old: Obj) -> list[FieldError]:
    return core.validate_immutable_data(new, old, kind="ConfigMap")


def _secret_update(new: Obj, old: Obj) -> list[FieldError]:
    return core.validate_immutable_data(new, old, kind="Secret")


# kind -> (validator, update validator, name function, has status)
_RULES: dict[str, tuple[Validator | None, UpdateValidator | None, Callable[[str], list[str]], bool]] = {
    "Pod": (_validate_pod, _validate_pod_update, vmeta.dns1123_subdomain, True),
    "DaemonSet": (apps.validate_daemonset, _ds_update, vmeta.dns1123_subdomain, True),
    "StatefulSet": (apps.validate_statefulset, _sts_update, vmeta.dns1123_subdomain, True),
    "Deployment": (apps.validate_deployment, _ds_update, vmeta.dns1123_subdomain, True),
    "ReplicaSet": (apps.validate_replicaset, _ds_update, vmeta.dns1123_subdomain, True),
    "ReplicationController": (apps.validate_replication_controller, None, vmeta.dns1123_subdomain, True),
    "Job": (apps.validate_job, None, vmeta.dns1123_subdomain, True),
    "CronJob": (apps.validate_cronjob, None, vmeta.dns1123_subdomain, True),
    "ControllerRevision": (apps.validate_controller_revision, None, vmeta.dns1123_subdomain, False),
    "Node": (core.validate_node, core.validate_node_update, vmeta.dns1123_subdomain, True),
    "Namespace": (None, core.validate_namespace_update, vmeta.dns1123_label, True),
    "Service": (core.validate_service, None, vmeta.dns1035_label, True),
    "ConfigMap": (core.validate_configmap, _configmap_update, vmeta.dns1123_subdomain, False),
    "Secret": (core.validate_secret, _secret_update, vmeta.dns1123_subdomain, False),
    "Lease": (core.validate_lease, None, vmeta.dns1123_subdomain, False),
    "Event": (core.validate_event, None, vmeta.dns1123_subdomain, False),
    kubeling_kinds.KIND: (kubeling_kinds.validate_rollout_plan, None, vmeta.dns1123_subdomain, True),
}

# validators and update validators that read nothing but the spec (upstream's ValidatePodSpec,
# ValidateDaemonSetSpec...; the update ones find nothing in an unchanged spec): an update that leaves the
# spec as stored skips them (Strategy.validate_update)
_SPEC_ONLY_RULES: frozenset[Callable[..., list[FieldError]]] = frozenset((
    _validate_pod, _validate_pod_update, apps.validate_daemonset, _ds_update, apps.validate_statefulset,
    _sts_update, apps.validate_deployment, apps.validate_replicaset, apps.validate_replication_controller,
    apps.validate_job, apps.validate_cronjob, core.validate_node, core.validate_node_update))

_CACHE: dict[tuple[Any, ...], Strategy] = {}


def strategy_for(resource: Any, subresource: str | None = None) -> Strategy:
    """The strategy for a resource (Resource, duck-typed object or (group, version, kind))."""
    group, version, kind = _kind_of(resource)
    key = (group, version, kind, subresource, getattr(resource, "namespaced", None))
    s = _CACHE.get(key)
    if s is not None:
        return s
    validator, update_validator, name_fn, has_status = _RULES.get(kind, (None, None, None, None))
    if name_fn is None:
        name_fn = vmeta.path_segment_name if kind in RBAC_KINDS else vmeta.dns1123_subdomain
    if has_status is None:
        root = schema.root_node(resource)
        has_status = bool(root is not None and root.kind == schema.OBJ and "status" in root.props)
        if kind == "Node":
            has_status = True
    cls = StatusStrategy if subresource == "status" else Strategy
    s = cls(resource, name_fn=name_fn, validator=validator, update_validator=update_validator,
            has_status=has_status)
    if kind == "Node" and subresource is None:
        s.prepare_for_create = _keep_status_create(s)  # type: ignore[method-assign]
    _CACHE[key] = s
    return s


def _keep_status_create(s: Strategy) -> Callable[[Obj], None]:
    """Nodes may set status on create (the kubelet registers with it)."""
    def prepare(obj: Obj) -> None:
        status = obj.get("status")
        Strategy.prepare_for_create(s, obj)
        if status is not None:
            obj["status"] = status
    return prepare
