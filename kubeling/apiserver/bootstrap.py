"""Objects a fresh upstream cluster has from its first second, created idempotently at start-up.

The system namespaces, the system PriorityClasses (the priority admission plugin's
post-start hook), the default ClusterRoles and bindings (the RBAC bootstrap
policy, the parts users and charts refer to), and the ``kubernetes`` Service.
"""

from __future__ import annotations

import logging
from typing import Any

from kubeling.api import errors
from kubeling.apiserver.admission import SYSTEM_PRIORITIES
from kubeling.apiserver.registry import Registry

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]
_ALL = ["*"]
_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


_VIEW_RULES = [
    _rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                 "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                 "services/status"], _READ),
    _rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                 "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], _READ),
    _rule([""], ["namespaces"], _READ),
    _rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                     "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                     "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], _READ),
    _rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], _READ),
    _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _READ),
    _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], _READ),
    _rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], _READ),
]
_EDIT_RULES = [
    _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "configmaps", "endpoints",
                 "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets",
                 "serviceaccounts", "services", "services/proxy"], _WRITE),
    _rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                     "replicasets/scale", "statefulsets", "statefulsets/scale"], _WRITE),
    _rule(["batch"], ["cronjobs", "jobs"], _WRITE),
    _rule(["policy"], ["poddisruptionbudgets"], _WRITE),
]

CLUSTER_ROLES: list[dict[str, Any]] = [
    {"name": "cluster-admin", "rules": [_rule(_ALL, _ALL, _ALL), {"nonResourceURLs": _ALL, "verbs": _ALL}]},
    {"name": "admin", "rules": _EDIT_RULES + _VIEW_RULES + [
        _rule(["rbac.authorization.k8s.io"], ["rolebindings", "roles"], _READ + _WRITE)],
     "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    {"name": "edit", "rules": _EDIT_RULES + _VIEW_RULES,
     "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
    {"name": "view", "rules": _VIEW_RULES, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
    {"name": "system:discovery", "rules": [{"nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
        "/version", "/version/"], "verbs": ["get"]}]},
    {"name": "system:basic-user", "rules": [
        _rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"])]},
    {"name": "system:public-info-viewer", "rules": [{"nonResourceURLs": [
        "/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]},
    {"name": "system:node", "rules": [
        _rule([""], ["nodes", "nodes/status"], _READ + ["create", "patch", "update", "delete"]),
        _rule([""], ["pods"], _READ + ["create", "delete"]), _rule([""], ["pods/status"], ["patch", "update"]),
        _rule(["coordination.k8s.io"], ["leases"], _READ + ["create", "update", "patch", "delete"])]},
    {"name": "system:node-proxier", "rules": [_rule([""], ["endpoints", "services"], ["list", "watch"]),
                                              _rule([""], ["nodes"], _READ)]},
    {"name": "system:kube-scheduler", "rules": [
        _rule([""], ["pods"], _READ + ["delete"]), _rule([""], ["bindings", "pods/binding"], ["create"]),
        _rule([""], ["pods/status"], ["patch", "update"]), _rule([""], ["nodes"], _READ)]},
    {"name": "system:kube-controller-manager", "rules": [_rule(_ALL, _ALL, _READ)]},
    {"name": "system:controller:daemon-set-controller", "rules": [
        _rule(["apps", "extensions"], ["daemonsets"], _READ),
        _rule(["apps", "extensions"], ["daemonsets/status"], ["update"]),
        _rule(["apps", "extensions"], ["daemonsets/finalizers"], ["update"]),
        _rule([""], ["nodes"], ["list", "watch"]),
        _rule([""], ["pods"], ["create", "delete", "list", "patch", "watch"]),
        _rule([""], ["pods/binding"], ["create"]),
        _rule(["apps"], ["controllerrevisions"], ["create", "delete", "get", "list", "patch", "update", "watch"]),
        _rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])]},
]
CLUSTER_ROLE_BINDINGS: list[dict[str, Any]] = [
    {"name": "cluster-admin", "role": "cluster-admin",
     "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}]},
    {"name": "system:discovery", "role": "system:discovery",
     "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"}]},
    {"name": "system:basic-user", "role": "system:basic-user",
     "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"}]},
    {"name": "system:public-info-viewer", "role": "system:public-info-viewer",
     "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"},
                  {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:unauthenticated"}]},
    {"name": "system:node-proxier", "role": "system:node-proxier",
     "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:kube-proxy"}]},
    {"name": "system:kube-scheduler", "role": "system:kube-scheduler",
     "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:kube-scheduler"}]},
    {"name": "system:kube-controller-manager", "role": "system:kube-controller-manager",
     "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                   "name": "system:kube-controller-manager"}]},
    {"name": "system:controller:daemon-set-controller", "role": "system:controller:daemon-set-controller",
     "subjects": [{"kind": "ServiceAccount", "name": "daemon-set-controller", "namespace": "kube-system"}]},
]
_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


async def _ensure(registry: Registry, group: str, plural: str, namespace: str | None, obj: dict[str, Any]) -> None:
    res = registry.admission.catalogue.lookup(group, "v1", plural)
    if res is None:
        return
    if await registry.store.get(registry.key(res, namespace, obj["metadata"]["name"])) is not None:
        return
    try:
        await registry.create(res, namespace, obj, field_validation="Strict")
    except errors.StatusError as exc:
        if exc.code != 409:
            log.warning("bootstrap of %s %s failed: %s", plural, obj["metadata"]["name"], exc.message)


async def bootstrap(registry: Registry, *, ca_pem: str) -> None:
    for ns in SYSTEM_NAMESPACES:
        await _ensure(registry, "", "namespaces", None,
                      {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
    for name, value in SYSTEM_PRIORITIES.items():
        await _ensure(registry, "scheduling.k8s.io", "priorityclasses", None, {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "preemptionPolicy": "PreemptLowerPriority",
            "description": "Used for system critical pods that must run in the cluster, but can be moved "
                           "to another node if necessary." if name == "system-cluster-critical" else
                           "Used for system critical pods that must not be moved from their current node."})
    for role in CLUSTER_ROLES:
        await _ensure(registry, "rbac.authorization.k8s.io", "clusterroles", None, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": role["name"], "labels": {**_BOOTSTRAP_LABELS, **role.get("labels", {})},
                         "annotations": dict(_AUTOUPDATE)},
            "rules": role["rules"]})
    for b in CLUSTER_ROLE_BINDINGS:
        await _ensure(registry, "rbac.authorization.k8s.io", "clusterrolebindings", None, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": b["name"], "labels": dict(_BOOTSTRAP_LABELS), "annotations": dict(_AUTOUPDATE)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": b["role"]},
            "subjects": b["subjects"]})
    for ns in SYSTEM_NAMESPACES:
        # the service account and root CA publishers do this for namespaces created later
        await _ensure(registry, "", "serviceaccounts", ns,
                      {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        await _ensure(registry, "", "configmaps", ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt",
                         "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to "
                                         "verify the kube-apiserver when using internal endpoints such as the "
                                         "internal service IP or kubernetes.default.svc. No other usage is "
                                         "guaranteed across distributions of Kubernetes clusters."}},
            "data": {"ca.crt": ca_pem}})
    await _ensure(registry, "", "services", "default", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
