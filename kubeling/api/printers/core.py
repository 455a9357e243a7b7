"""Table rows for core/v1 kinds other than pods: nodes, namespaces, services, config, events, volumes."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from kubeling.api.printers.common import (
    AGE,
    NAME,
    Obj,
    Printer,
    age,
    col,
    deleting,
    meta,
    name,
    spec,
    status,
)
from kubeling.api.selectors import format_labels
from kubeling.api.timeutil import translate_timestamp_since

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
NODE_ROLE_LABEL = "kubernetes.io/role"


def node_roles(node: Obj) -> list[str]:
    roles: set[str] = set()
    for k, v in (meta(node).get("labels") or {}).items():
        if k.startswith(NODE_ROLE_PREFIX) and k[len(NODE_ROLE_PREFIX):]:
            roles.add(k[len(NODE_ROLE_PREFIX):])
        elif k == NODE_ROLE_LABEL and v:
            roles.add(v)
    return sorted(roles)


def _node_address(node: Obj, kind: str) -> str:
    for a in status(node).get("addresses") or []:
        if a.get("type") == kind:
            return a.get("address", "")
    return "<none>"


def _node_row(node: Obj, now: datetime) -> list[Any]:
    parts: list[str] = []
    for c in status(node).get("conditions") or []:
        if c.get("type") == "Ready":
            parts = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not parts:
        parts = ["Unknown"]
    if spec(node).get("unschedulable"):
        parts.append("SchedulingDisabled")
    info = status(node).get("nodeInfo") or {}
    return [name(node), ",".join(parts), ",".join(node_roles(node)) or "<none>", age(node, now),
            info.get("kubeletVersion", ""), _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


NODE = Printer((
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "@core.v1.NodeSystemInfo.kubeletVersion"),
    col("Internal-IP", "string", "@core.v1.NodeStatus.addresses", 1),
    col("External-IP", "string", "@core.v1.NodeStatus.addresses", 1),
    col("OS-Image", "string", "@core.v1.NodeSystemInfo.osImage", 1),
    col("Kernel-Version", "string", "@core.v1.NodeSystemInfo.kernelVersion", 1),
    col("Container-Runtime", "string", "@core.v1.NodeSystemInfo.containerRuntimeVersion", 1),
), _node_row)

NAMESPACE = Printer((
    NAME, col("Status", "string", "The status of the namespace"), AGE,
), lambda o, now: [name(o), status(o).get("phase", ""), age(o, now)])

SECRET = Printer((
    NAME,
    col("Type", "string", "@core.v1.Secret.type"),
    col("Data", "string", "@core.v1.Secret.data"),
    AGE,
), lambda o, now: [name(o), o.get("type", ""), len(o.get("data") or {}), age(o, now)])

CONFIG_MAP = Printer((
    NAME, col("Data", "string", "@core.v1.ConfigMap.data"), AGE,
), lambda o, now: [name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o, now)])

SERVICE_ACCOUNT = Printer((
    NAME, col("Secrets", "string", "@core.v1.ServiceAccount.secrets"), AGE,
), lambda o, now: [name(o), len(o.get("secrets") or []), age(o, now)])


def _lb_ingress(ingress: list[Obj] | None) -> str:
    seen: list[str] = []
    for i in ingress or []:
        v = i.get("ip") or i.get("hostname")
        if v and v not in seen:
            seen.append(v)
    return ",".join(seen)


def service_external_ip(svc: Obj) -> str:
    sp = spec(svc)
    stype = sp.get("type", "")
    external = sp.get("externalIPs") or []
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress((status(svc).get("loadBalancer") or {}).get("ingress"))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if stype == "ExternalName":
        return sp.get("externalName", "")
    return "<unknown>"


def _ports(ports: list[Obj] | None) -> str:
    out = []
    for p in ports or []:
        proto = p.get("protocol", "")
        if p.get("nodePort"):
            out.append(f"{p.get('port', 0)}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port', 0)}/{proto}")
    return ",".join(out) or "<none>"


def _service_row(svc: Obj, now: datetime) -> list[Any]:
    sp = spec(svc)
    ips = sp.get("clusterIPs") or []
    cluster_ip = (ips[0] if ips else sp.get("clusterIP")) or "<none>"
    return [name(svc), sp.get("type", ""), cluster_ip, service_external_ip(svc), _ports(sp.get("ports")),
            age(svc, now), format_labels(sp.get("selector"))]


SERVICE = Printer((
    NAME,
    col("Type", "string", "@core.v1.ServiceSpec.type"),
    col("Cluster-IP", "string", "@core.v1.ServiceSpec.clusterIP"),
    col("External-IP", "string", "@core.v1.ServiceSpec.externalIPs"),
    col("Port(s)", "string", "@core.v1.ServiceSpec.ports"),
    AGE,
    col("Selector", "string", "@core.v1.ServiceSpec.selector", 1),
), _service_row)


def _host_port(ip: str, port: Any) -> str:
    try:
        if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address):
            return f"[{ip}]:{port}"
    except ValueError:
        if ":" in ip:
            return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def format_endpoints(ep: Obj) -> str:
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    items: list[str] = []
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            count += len(addresses)
            items.extend(a.get("ip", "") for a in addresses)
            continue
        for p in ports:
            count += len(addresses)
            items.extend(_host_port(a.get("ip", ""), p.get("port", 0)) for a in addresses)
    shown = ",".join(items[:3])
    if len(items) > 3:
        return f"{shown} + {count - 3} more..."
    return shown


ENDPOINTS = Printer((
    NAME, col("Endpoints", "string", "@core.v1.Endpoints.subsets"), AGE,
), lambda o, now: [name(o), format_endpoints(o), age(o, now)])


def core_event(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event seen through core/v1 field names (upstream prints the internal type)."""
    if "involvedObject" in obj or "regarding" not in obj and "note" not in obj:
        return obj
    source = obj.get("deprecatedSource") or {}
    return {
        "metadata": obj.get("metadata") or {},
        "involvedObject": obj.get("regarding") or {},
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "source": source,
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "type": obj.get("type", ""),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _event_row(obj: Obj, now: datetime) -> list[Any]:
    ev = core_event(obj)
    first = ev.get("firstTimestamp")
    first_seen = translate_timestamp_since(first, now) if first else translate_timestamp_since(ev.get("eventTime"), now)
    last = ev.get("lastTimestamp")
    last_seen = translate_timestamp_since(last, now) if last else first_seen
    count = ev.get("count") or 0
    series = ev.get("series")
    if series is not None:
        last_seen = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    ref = ev.get("involvedObject") or {}
    kind = (ref.get("kind") or "").lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent", "")
    instance = source.get("host") or ev.get("reportingInstance", "")
    return [last_seen, ev.get("type", ""), ev.get("reason", ""), target, ref.get("fieldPath", ""),
            f"{component}, {instance}" if instance else component, (ev.get("message") or "").strip(),
            first_seen, count, name(ev)]


EVENT = Printer((
    col("Last Seen", "string", "@core.v1.Event.lastTimestamp"),
    col("Type", "string", "@core.v1.Event.type"),
    col("Reason", "string", "@core.v1.Event.reason"),
    col("Object", "string", "@core.v1.Event.involvedObject"),
    col("Subobject", "string", "@core.v1.ObjectReference.fieldPath", 1),
    col("Source", "string", "@core.v1.Event.source", 1),
    col("Message", "string", "@core.v1.Event.message"),
    col("First Seen", "string", "@core.v1.Event.firstTimestamp", 1),
    col("Count", "string", "@core.v1.Event.count", 1),
    col("Name", "string", "@meta.v1.ObjectMeta.name", 1, "name"),
), _event_row)


def access_modes(modes: list[str] | None) -> str:
    modes = modes or []
    short = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
             ("ReadWriteOncePod", "RWOP")]
    return ",".join(s for m, s in short if m in modes)


def _pv_row(pv: Obj, now: datetime) -> list[Any]:
    sp = spec(pv)
    ref = sp.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if deleting(pv) else status(pv).get("phase", "")
    storage_class = (meta(pv).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class") \
        or sp.get("storageClassName", "")
    return [name(pv), str((sp.get("capacity") or {}).get("storage", "0")), access_modes(sp.get("accessModes")),
            sp.get("persistentVolumeReclaimPolicy", ""), phase, claim, storage_class,
            sp.get("volumeAttributesClassName") or "<unset>", status(pv).get("reason", ""), age(pv, now),
            sp.get("volumeMode") or "<unset>"]


PERSISTENT_VOLUME = Printer((
    NAME,
    col("Capacity", "string", "@core.v1.PersistentVolumeSpec.capacity"),
    col("Access Modes", "string", "@core.v1.PersistentVolumeSpec.accessModes"),
    col("Reclaim Policy", "string", "@core.v1.PersistentVolumeSpec.persistentVolumeReclaimPolicy"),
    col("Status", "string", "@core.v1.PersistentVolumeStatus.phase"),
    col("Claim", "string", "@core.v1.PersistentVolumeSpec.claimRef"),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", "@core.v1.PersistentVolumeStatus.reason"),
    AGE,
    col("VolumeMode", "string", "@core.v1.PersistentVolumeSpec.volumeMode", 1),
), _pv_row)


def _pvc_row(pvc: Obj, now: datetime) -> list[Any]:
    sp, st = spec(pvc), status(pvc)
    phase = "Terminating" if deleting(pvc) else st.get("phase", "")
    capacity = modes = ""
    if sp.get("volumeName"):
        modes = access_modes(st.get("accessModes"))
        capacity = str((st.get("capacity") or {}).get("storage", "0"))
    annotations = meta(pvc).get("annotations") or {}
    storage_class = annotations.get("volume.beta.kubernetes.io/storage-class") or sp.get("storageClassName") or ""
    return [name(pvc), phase, sp.get("volumeName", ""), capacity, modes, storage_class,
            sp.get("volumeAttributesClassName") or "<unset>", age(pvc, now), sp.get("volumeMode") or "<unset>"]


PERSISTENT_VOLUME_CLAIM = Printer((
    NAME,
    col("Status", "string", "@core.v1.PersistentVolumeClaimStatus.phase"),
    col("Volume", "string", "@core.v1.PersistentVolumeClaimSpec.volumeName"),
    col("Capacity", "string", "@core.v1.PersistentVolumeClaimStatus.capacity"),
    col("Access Modes", "string", "@core.v1.PersistentVolumeClaimStatus.accessModes"),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    AGE,
    col("VolumeMode", "string", "@core.v1.PersistentVolumeClaimSpec.volumeMode", 1),
), _pvc_row)


def _quota_row(q: Obj, now: datetime) -> list[Any]:
    hard = status(q).get("hard") or {}
    used = status(q).get("used") or {}
    requests, limits = [], []
    for res in sorted(hard):
        target = limits if res.split(".")[0] == "limits" and "." in res else requests
        target.append(f"{res}: {used.get(res, '0')}/{hard[res]}")
    return [name(q), age(q, now), ", ".join(requests), ", ".join(limits)]


RESOURCE_QUOTA = Printer((
    NAME, AGE,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use "
        "independent of contention on the node."),
), _quota_row)

