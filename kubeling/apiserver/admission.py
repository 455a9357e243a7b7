"""Built-in admission, the plugins real manifests rely on, in upstream's order.

- NamespaceLifecycle: no new objects in a missing or terminating namespace.
- ServiceAccount: pods get ``default`` and its projected token volume; a missing account is refused.
- Priority: priorityClassName resolves to spec.priority (system classes and user PriorityClasses).
- DefaultTolerationSeconds: not-ready/unreachable NoExecute tolerations for 300 s.
- Service IP allocation: ClusterIPs from 10.96.0.0/12 (no traffic; kubectl shows them).
"""

from __future__ import annotations

import ipaddress
import zlib
from typing import TYPE_CHECKING, Any

from kubeling.api import errors
from kubeling.apiserver.registry import random_suffix

if TYPE_CHECKING:
    from kubeling.api.catalogue import Resource
    from kubeling.apiserver.registry import Registry

Obj = dict[str, Any]

# namespaced kinds that may still be written while a namespace terminates (upstream's exemptions)
_TERMINATING_EXEMPT = {"events", "subjectaccessreviews", "localsubjectaccessreviews", "tokenreviews",
                       "selfsubjectaccessreviews", "selfsubjectrulesreviews", "bindings", "leases"}
SYSTEM_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_TOKEN_VOLUME_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


class Admission:
    def __init__(self, registry: Registry, catalogue: Any) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self._resources: dict[tuple[str, str], Resource] = {}

    def _res(self, group: str, plural: str) -> Resource:
        res = self._resources.get((group, plural))
        if res is None:
            res = self.catalogue.lookup(group, "v1", plural)
            assert res is not None, plural
            self._resources[(group, plural)] = res
        return res

    async def _get_or_none(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        """The object, read-only: every create looks up its namespace (and a pod its ServiceAccount),
        so a store that can serve a shared decoded copy (``peek``) is asked for that."""
        key = self.registry.key(self._res(group, plural), namespace, name)
        store = self.registry.store
        peek = getattr(store, "peek", None)
        if peek is not None:
            return peek(key)
        return await store.get(key)

    async def admit_create(self, resource: Resource, obj: Obj, *, user: dict[str, Any] | None) -> None:
        meta = obj["metadata"]
        if resource.namespaced:
            await self._namespace_lifecycle(resource, meta.get("namespace") or "", meta.get("name", ""))
        if resource.group == "" and resource.plural == "pods":
            await self._service_account(obj)
            await self._priority(obj)
            _default_toleration_seconds(obj)
        elif resource.group == "" and resource.plural == "services":
            await self._allocate_cluster_ip(obj)

    async def admit_update(self, resource: Resource, new: Obj, old: Obj, *, user: dict[str, Any] | None) -> None:
        return None

    async def admit_delete(self, resource: Resource, obj: Obj) -> None:
        if resource.group == "" and resource.plural == "namespaces":
            name = obj["metadata"]["name"]
            if name in ("default", "kube-system", "kube-public"):
                raise errors.forbidden_error("", "namespaces", name,
                                             "this namespace may not be deleted")

    async def _namespace_lifecycle(self, resource: Resource, namespace: str, name: str) -> None:
        if resource.plural in _TERMINATING_EXEMPT and resource.plural not in ("events", "leases"):
            return
        ns = await self._get_or_none("", "namespaces", None, namespace)
        if ns is None:
            raise errors.not_found_error("", "namespaces", namespace)
        if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
            if resource.plural in ("events",):
                return
            raise errors.StatusError(
                403, "Forbidden",
                f'{resource.plural}{"." + resource.group if resource.group else ""} "{name}" is forbidden: '
                f"unable to create new content in namespace {namespace} because it is being terminated",
                details={"name": name, "group": resource.group, "kind": resource.plural,
                         "causes": [{"reason": "NamespaceTerminating",
                                     "message": f"namespace {namespace} is being terminated",
                                     "field": "metadata.namespace"}]})

    async def _service_account(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        meta = pod["metadata"]
        if meta.get("annotations", {}).get("kubernetes.io/config.mirror"):
            return
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa_name
        spec["serviceAccount"] = sa_name
        sa = await self._get_or_none("", "serviceaccounts", meta.get("namespace"), sa_name)
        name = meta.get("name") or meta.get("generateName", "")
        if sa is None:
            raise errors.StatusError(
                403, "Forbidden",
                f'pods "{name}" is forbidden: error looking up service account '
                f'{meta.get("namespace")}/{sa_name}: serviceaccount "{sa_name}" not found',
                details={"name": name, "kind": "pods"})
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken", True)
        if not automount:
            return
        volumes = spec.setdefault("volumes", [])
        containers = spec.get("containers") or []
        init = spec.get("initContainers")
        if init:
            containers = [*containers, *init]
        for c in containers:
            for m in c.get("volumeMounts") or ():
                if m.get("mountPath") == _TOKEN_VOLUME_PATH:
                    return  # the pod mounts something there itself
        vol_name = "kube-api-access-" + random_suffix(5)
        volumes.append({"name": vol_name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
        for c in containers:
            c.setdefault("volumeMounts", []).append(
                {"name": vol_name, "readOnly": True, "mountPath": _TOKEN_VOLUME_PATH})

    async def _priority(self, pod: Obj) -> None:
        spec = pod["spec"]
        cls = spec.get("priorityClassName")
        name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
        if cls:
            if cls in SYSTEM_PRIORITIES:
                value, policy = SYSTEM_PRIORITIES[cls], "PreemptLowerPriority"
            else:
                pc = await self._get_or_none("scheduling.k8s.io", "priorityclasses", None, cls)
                if pc is None:
                    raise errors.StatusError(
                        403, "Forbidden",
                        f'pods "{name}" is forbidden: no PriorityClass with name {cls} was found',
                        details={"name": name, "kind": "pods"})
                value, policy = pc.get("value", 0), pc.get("preemptionPolicy", "PreemptLowerPriority")
            if spec.get("priority") is not None and spec["priority"] != value:
                raise errors.StatusError(
                    403, "Forbidden",
                    f'pods "{name}" is forbidden: the integer value of priority ({spec["priority"]}) must not '
                    f"be provided in pod spec; priority admission controller computed {value} from the given "
                    f"PriorityClass name", details={"name": name, "kind": "pods"})
            spec["priority"] = value
            spec.setdefault("preemptionPolicy", policy)
        else:
            spec.setdefault("priority", 0)
            spec.setdefault("preemptionPolicy", "PreemptLowerPriority")

    async def _allocate_cluster_ip(self, svc: Obj) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            return
        meta = svc["metadata"]
        seed = zlib.crc32(f'{meta.get("namespace")}/{meta.get("name")}'.encode())
        size = _SERVICE_CIDR.num_addresses - 2
        for i in range(64):
            ip = str(_SERVICE_CIDR.network_address + 2 + (seed + i * 7919) % size)
            if not await self._ip_taken(ip):
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
                return
        raise errors.internal("failed to allocate a serviceIP: range is full")

    async def _ip_taken(self, ip: str) -> bool:
        res = self._res("", "services")
        page = await self.registry.store.list(self.registry.prefix(res, None))
        return any(s.get("spec", {}).get("clusterIP") == ip for s in page.items)


def _default_toleration_seconds(pod: Obj) -> None:
    tolerations = pod["spec"].setdefault("tolerations", [])
    if not tolerations:  # the usual pod: both defaults, nothing to compare with
        tolerations.append({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 300})
        tolerations.append({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": 300})
        return
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if any(_tolerates_noexecute(t, key) for t in tolerations):
            continue
        tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _tolerates_noexecute(t: Obj, key: str) -> bool:
    if t.get("effect") not in (None, "", "NoExecute"):
        return False
    if not t.get("key"):
        return t.get("operator") == "Exists"
    return t.get("key") == key
