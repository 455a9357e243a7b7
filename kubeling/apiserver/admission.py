"""Built-in admission, the plugins real manifests rely on, in upstream's order.

- NamespaceLifecycle: no new objects in a missing or terminating namespace.
- ServiceAccount: pods get ``default`` and its projected token volume; a missing account is refused.
- Priority: priorityClassName resolves to spec.priority (system classes and user PriorityClasses).
- DefaultTolerationSeconds: not-ready/unreachable NoExecute tolerations for 300 s.
- Service IP allocation: ClusterIPs from 10.96.0.0/12 (no traffic; kubectl shows them).
"""

from __future__ import annotations

import ipaddress
import os
import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubeling.api import errors
from kubeling.storage.codec import materialize

if TYPE_CHECKING:
    from kubeling.api.catalogue import Resource
    from kubeling.apiserver.registry import Registry

Obj = dict[str, Any]

# namespaced kinds that may still be written while a namespace terminates (upstream's exemptions)
_TERMINATING_EXEMPT = {"events", "subjectaccessreviews", "localsubjectaccessreviews", "tokenreviews",
                       "selfsubjectaccessreviews", "selfsubjectrulesreviews", "bindings", "leases"}
# ... of which these are never checked at all (events and leases still need the namespace to exist)
_NO_NAMESPACE_CHECK = frozenset(_TERMINATING_EXEMPT - {"events", "leases"})
SYSTEM_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_TOKEN_VOLUME_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")

# the token volume's name suffix: five letters of upstream's utilrand alphabet (as registry.random_suffix),
# cut from a batch of random bytes mapped onto it in C: every pod create takes one, and drawing each
# alone costs several Python frames. 243 = 9 x 27 byte values are kept, so each letter is equally likely.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_KEPT_BYTES = 9 * len(_ALPHABET)
_BYTE_TO_LETTER = bytes((_ALPHABET[i % len(_ALPHABET)] if i < _KEPT_BYTES else "-").encode()[0] for i in range(256))
_REJECTED_BYTES = bytes(range(_KEPT_BYTES, 256))
_SUFFIX_BATCH = 4096  # random bytes per refill (about 750 suffixes)
_suffixes: list[str] = []
os.register_at_fork(after_in_child=_suffixes.clear)  # a forked child draws its own (random reseeds there too)
_KEY_CACHE = 4096  # namespaces (and ServiceAccounts) whose store keys are remembered


def _volume_suffix() -> str:
    if not _suffixes:
        letters = random.randbytes(_SUFFIX_BATCH).translate(_BYTE_TO_LETTER, _REJECTED_BYTES).decode()
        _suffixes.extend(letters[i:i + 5] for i in range(0, len(letters) - 4, 5))
    return _suffixes.pop()


class Admission:
    def __init__(self, registry: Registry, catalogue: Any) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self._resources: dict[tuple[str, str], Resource] = {}
        # every pod create reads its namespace and ServiceAccount: their keys are remembered, and the
        # objects come from the store's shared decoded copy (peek) or, for a store without one, from a
        # copy decoded once per resourceVersion (``_decoded``), so a changed object is always seen
        self._store: Any = None
        self._peek: Callable[[str], Obj | None] | None = None
        self._decoded: dict[str, tuple[int, Obj]] = {}
        self._ns_keys: dict[str, str] = {}
        self._sa_keys: dict[tuple[str, str], str] = {}

    def _res(self, group: str, plural: str) -> Resource:
        res = self._resources.get((group, plural))
        if res is None:
            res = self.catalogue.lookup(group, "v1", plural)
            assert res is not None, plural
            self._resources[(group, plural)] = res
        return res

    def _peeker(self) -> Callable[[str], Obj | None] | None:
        """The store's ``peek`` (a shared, read-only decoded copy), or None when it has none."""
        store = self.registry.store
        if store is not self._store:
            self._store, self._peek = store, getattr(store, "peek", None)
            self._decoded.clear()
        return self._peek

    async def _fetch(self, key: str) -> Obj | None:
        """The object at key, read-only, from a store without ``peek``: its revision is read every
        time, and the object decoded again only when that revision changed."""
        store = self.registry.store
        get_raw = getattr(store, "get_raw", None)
        if get_raw is None:
            return await store.get(key)
        hit = await get_raw(key)
        if hit is None:
            self._decoded.pop(key, None)
            return None
        memo = self._decoded.get(key)
        if memo is not None and memo[0] == hit[0]:
            return memo[1]
        obj = materialize(hit[1], hit[0])
        if len(self._decoded) >= _KEY_CACHE:
            self._decoded.clear()
        self._decoded[key] = (hit[0], obj)
        return obj

    async def _get_or_none(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        """The object, read-only (shared: callers must not mutate it)."""
        key = self.registry.key(self._res(group, plural), namespace, name)
        peek = self._peeker()
        return peek(key) if peek is not None else await self._fetch(key)

    def _namespace_key(self, namespace: str) -> str:
        if namespace.__class__ is not str:  # (refused later): not remembered
            return self.registry.key(self._res("", "namespaces"), None, namespace)
        key = self._ns_keys.get(namespace)
        if key is None:
            if len(self._ns_keys) >= _KEY_CACHE:
                self._ns_keys.clear()
            key = self._ns_keys[namespace] = self.registry.key(self._res("", "namespaces"), None, namespace)
        return key

    async def admit_create(self, resource: Resource, obj: Obj, *, user: dict[str, Any] | None) -> None:
        # the plugins' look-ups are read here, synchronously from a store with ``peek``: every pod
        # create passes, and a coroutine per plugin would cost more than its checks
        meta = obj["metadata"]
        peek = self._peeker()
        if resource.namespaced and resource.plural not in _NO_NAMESPACE_CHECK:
            namespace = meta.get("namespace") or ""
            key = self._namespace_key(namespace)
            ns = peek(key) if peek is not None else await self._fetch(key)
            if ns is None or ns.get("metadata", _EMPTY).get("deletionTimestamp") or ns.get(
                    "status", _EMPTY).get("phase") == "Terminating":
                _namespace_lifecycle(resource, ns, namespace, meta.get("name", ""))
        if resource.plural == "pods" and resource.group == "":
            spec = obj.setdefault("spec", {})
            key = self._service_account_key_for(obj)
            if key is not None:
                sa = peek(key) if peek is not None else await self._fetch(key)
                _service_account(obj, sa)
            if spec.get("priorityClassName"):
                await self._priority(obj)
            else:
                spec.setdefault("priority", 0)
                spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
            _default_toleration_seconds(obj)
        elif resource.plural == "services" and resource.group == "":
            await self._allocate_cluster_ip(obj)

    async def admit_update(self, resource: Resource, new: Obj, old: Obj, *, user: dict[str, Any] | None) -> None:
        return None

    async def admit_delete(self, resource: Resource, obj: Obj) -> None:
        if resource.group == "" and resource.plural == "namespaces":
            name = obj["metadata"]["name"]
            if name in ("default", "kube-system", "kube-public"):
                raise errors.forbidden_error("", "namespaces", name,
                                             "this namespace may not be deleted")

    def _service_account_key_for(self, pod: Obj) -> str | None:
        """ServiceAccount admission's first half: the pod names its account (``default`` unless it
        says), whose store key is returned; None for a mirror pod, which is left alone."""
        spec = pod["spec"]
        meta = pod["metadata"]
        if meta.get("annotations", _EMPTY).get("kubernetes.io/config.mirror"):
            return None
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa_name
        spec["serviceAccount"] = sa_name
        namespace = meta.get("namespace")
        if namespace.__class__ is not str or sa_name.__class__ is not str:  # (refused later): not remembered
            return self.registry.key(self._res("", "serviceaccounts"), namespace, sa_name)
        key = self._sa_keys.get((namespace, sa_name))
        if key is None:
            if len(self._sa_keys) >= _KEY_CACHE:
                self._sa_keys.clear()
            key = self._sa_keys[(namespace, sa_name)] = self.registry.key(
                self._res("", "serviceaccounts"), namespace, sa_name)
        return key

    async def _priority(self, pod: Obj) -> None:
        """priorityClassName (set) resolves to spec.priority; a pod without one is given 0 by admit_create."""
        spec = pod["spec"]
        cls = spec["priorityClassName"]
        name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
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


def _namespace_lifecycle(resource: Resource, ns: Obj | None, namespace: str, name: str) -> None:
    """NamespaceLifecycle on the namespace object (None: missing)."""
    if ns is None:
        raise errors.not_found_error("", "namespaces", namespace)
    if ns.get("metadata", _EMPTY).get("deletionTimestamp") or ns.get("status", _EMPTY).get("phase") == "Terminating":
        if resource.plural == "events":
            return
        raise errors.StatusError(
            403, "Forbidden",
            f'{resource.plural}{"." + resource.group if resource.group else ""} "{name}" is forbidden: '
            f"unable to create new content in namespace {namespace} because it is being terminated",
            details={"name": name, "group": resource.group, "kind": resource.plural,
                     "causes": [{"reason": "NamespaceTerminating",
                                 "message": f"namespace {namespace} is being terminated",
                                 "field": "metadata.namespace"}]})


_EMPTY: Obj = {}  # read-only default for lookups


def _service_account(pod: Obj, sa: Obj | None) -> None:
    """ServiceAccount admission's second half, with the account the pod names (None: missing)."""
    spec = pod["spec"]
    if sa is None:
        meta = pod["metadata"]
        name = meta.get("name") or meta.get("generateName", "")
        sa_name = spec["serviceAccountName"]
        raise errors.StatusError(
            403, "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account '
            f'{meta.get("namespace")}/{sa_name}: serviceaccount "{sa_name}" not found',
            details={"name": name, "kind": "pods"})
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = sa.get("automountServiceAccountToken", True)
    if automount:
        _mount_token(spec)


_TOKEN_SOURCE: Obj = {"expirationSeconds": 3607, "path": "token"}
_CA_ITEM: Obj = {"key": "ca.crt", "path": "ca.crt"}
_NAMESPACE_REF: Obj = {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
_TOKEN_MOUNT: Obj = {"name": "", "readOnly": True, "mountPath": _TOKEN_VOLUME_PATH}  # name: the volume's


def _mount_token(spec: Obj) -> None:
    """The projected kube-api-access volume and its mount in every container, unless a container
    already mounts something at the token path."""
    volumes = spec.setdefault("volumes", [])
    containers = spec.get("containers") or []
    init = spec.get("initContainers")
    if init:
        containers = [*containers, *init]
    for c in containers:
        mounts = c.get("volumeMounts")
        if mounts:
            for m in mounts:
                if m.get("mountPath") == _TOKEN_VOLUME_PATH:
                    return  # the pod mounts something there itself
    vol_name = "kube-api-access-" + _volume_suffix()
    # fresh dicts throughout (the pod is mutated further on); the flat ones copied from templates
    copy = dict.copy
    volumes.append({"name": vol_name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": copy(_TOKEN_SOURCE)},
        {"configMap": {"name": "kube-root-ca.crt", "items": [copy(_CA_ITEM)]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": copy(_NAMESPACE_REF)}]}}]}})
    for c in containers:
        mount = copy(_TOKEN_MOUNT)
        mount["name"] = vol_name
        c.setdefault("volumeMounts", []).append(mount)


# DefaultTolerationSeconds' two tolerations (copied into each pod: flat, so a copy is a fresh one)
_NOT_READY: Obj = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 300}
_UNREACHABLE: Obj = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 300}


def _default_toleration_seconds(pod: Obj) -> None:
    spec = pod["spec"]
    if "tolerations" not in spec:  # the usual pod: both defaults, nothing to compare with
        spec["tolerations"] = [_NOT_READY.copy(), _UNREACHABLE.copy()]
        return
    tolerations = spec["tolerations"]
    if not tolerations:
        tolerations.append(_NOT_READY.copy())
        tolerations.append(_UNREACHABLE.copy())
        return
    for default in (_NOT_READY, _UNREACHABLE):
        if any(_tolerates_noexecute(t, default["key"]) for t in tolerations):
            continue
        tolerations.append(default.copy())


def _tolerates_noexecute(t: Obj, key: str) -> bool:
    if t.get("effect") not in (None, "", "NoExecute"):
        return False
    if not t.get("key"):
        return t.get("operator") == "Exists"
    return t.get("key") == key
