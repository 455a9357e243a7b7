"""Table rows for cluster plumbing: RBAC bindings, leases, scheduling, storage, networking, admission."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeling.api.printers.common import (
    AGE,
    NAME,
    Obj,
    Printer,
    age,
    col,
    list_with_more,
    meta,
    name,
    spec,
    status,
)
from kubeling.api.selectors import format_label_selector
from kubeling.api.timeutil import human_duration


def _binding_row(obj: Obj, now: datetime) -> list[Any]:
    ref = obj.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in obj.get("subjects") or []:
        kind = s.get("kind")
        if kind == "User":
            users.append(s.get("name", ""))
        elif kind == "Group":
            groups.append(s.get("name", ""))
        elif kind == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(sas)]


def _binding(what: str, definition: str) -> Printer:
    return Printer((
        NAME,
        col("Role", "string", f"@rbac.v1.{definition}.roleRef"),
        AGE,
        col("Users", "string", f"Users in the {what}", 1),
        col("Groups", "string", f"Groups in the {what}", 1),
        col("ServiceAccounts", "string", f"ServiceAccounts in the {what}", 1),
    ), _binding_row)


ROLE_BINDING = _binding("roleBinding", "RoleBinding")
CLUSTER_ROLE_BINDING = _binding("clusterRoleBinding", "ClusterRoleBinding")

LEASE = Printer((
    NAME, col("Holder", "string", "@coordination.v1.LeaseSpec.holderIdentity"), AGE,
), lambda o, now: [name(o), spec(o).get("holderIdentity") or "", age(o, now)])

PRIORITY_CLASS = Printer((
    NAME,
    col("Value", "integer", "@scheduling.v1.PriorityClass.value"),
    col("Global-Default", "boolean", "@scheduling.v1.PriorityClass.globalDefault"),
    AGE,
    col("PreemptionPolicy", "string", "@scheduling.v1.PriorityClass.preemptionPolicy"),
), lambda o, now: [name(o), o.get("value", 0), bool(o.get("globalDefault", False)), age(o, now),
                   o.get("preemptionPolicy") or ""])

RUNTIME_CLASS = Printer((
    NAME, col("Handler", "string", "@node.v1.RuntimeClass.handler"), AGE,
), lambda o, now: [name(o), o.get("handler", ""), age(o, now)])


def _is_default_class(obj: Obj) -> bool:
    annotations = meta(obj).get("annotations") or {}
    return "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                      annotations.get("storageclass.beta.kubernetes.io/is-default-class"))


STORAGE_CLASS = Printer((
    NAME,
    col("Provisioner", "string", "@storage.v1.StorageClass.provisioner"),
    col("ReclaimPolicy", "string", "@storage.v1.StorageClass.reclaimPolicy"),
    col("VolumeBindingMode", "string", "@storage.v1.StorageClass.volumeBindingMode"),
    col("AllowVolumeExpansion", "string", "@storage.v1.StorageClass.allowVolumeExpansion"),
    AGE,
), lambda o, now: [name(o) + (" (default)" if _is_default_class(o) else ""), o.get("provisioner", ""),
                   o.get("reclaimPolicy") or "Delete", o.get("volumeBindingMode") or "Immediate",
                   bool(o.get("allowVolumeExpansion", False)), age(o, now)])


def _csi_driver_row(o: Obj, now: datetime) -> list[Any]:
    sp = spec(o)
    tokens = sp.get("tokenRequests")
    return [name(o),
            True if sp.get("attachRequired") is None else bool(sp["attachRequired"]),
            bool(sp.get("podInfoOnMount", False)), bool(sp.get("storageCapacity", False)),
            "<unset>" if tokens is None else ",".join(t.get("audience", "") for t in tokens),
            bool(sp.get("requiresRepublish", False)),
            ",".join(sp.get("volumeLifecycleModes") or []) or "<none>", age(o, now)]


CSI_DRIVER = Printer((
    NAME,
    col("AttachRequired", "boolean", "@storage.v1.CSIDriverSpec.attachRequired"),
    col("PodInfoOnMount", "boolean", "@storage.v1.CSIDriverSpec.podInfoOnMount"),
    col("StorageCapacity", "boolean", "@storage.v1.CSIDriverSpec.storageCapacity"),
    col("TokenRequests", "string", "@storage.v1.CSIDriverSpec.tokenRequests"),
    col("RequiresRepublish", "boolean", "@storage.v1.CSIDriverSpec.requiresRepublish"),
    col("Modes", "string", "@storage.v1.CSIDriverSpec.volumeLifecycleModes"),
    AGE,
), _csi_driver_row)

CSI_NODE = Printer((
    NAME,
    col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"),
    AGE,
), lambda o, now: [name(o), len(spec(o).get("drivers") or []), age(o, now)])

VOLUME_ATTACHMENT = Printer((
    NAME,
    col("Attacher", "string", "@storage.v1.VolumeAttachmentSpec.attacher", fmt="name"),
    col("PV", "string", "@storage.v1.VolumeAttachmentSource.persistentVolumeName"),
    col("Node", "string", "@storage.v1.VolumeAttachmentSpec.nodeName"),
    col("Attached", "boolean", "@storage.v1.VolumeAttachmentStatus.attached"),
    AGE,
), lambda o, now: [name(o), spec(o).get("attacher", ""),
                   (spec(o).get("source") or {}).get("persistentVolumeName") or "",
                   spec(o).get("nodeName", ""), bool(status(o).get("attached", False)), age(o, now)])


def _ingress_row(o: Obj, now: datetime) -> list[Any]:
    sp = spec(o)
    rules = sp.get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")][:3]
    hosts_text = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        hosts_text += f" + {len(rules) - 3} more..."
    seen: list[str] = []
    for i in (status(o).get("loadBalancer") or {}).get("ingress") or []:
        v = i.get("ip") or i.get("hostname")
        if v and v not in seen:
            seen.append(v)
    return [name(o), sp.get("ingressClassName") or "<none>", hosts_text, ",".join(seen),
            "80, 443" if sp.get("tls") else "80", age(o, now)]


INGRESS = Printer((
    NAME,
    col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
    col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
    col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
), _ingress_row)


def _ingress_class_row(o: Obj, now: datetime) -> list[Any]:
    params = spec(o).get("parameters")
    text = "<none>"
    if params:
        text = params.get("kind", "")
        if params.get("apiGroup"):
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [name(o), spec(o).get("controller", ""), text, age(o, now)]


INGRESS_CLASS = Printer((
    NAME,
    col("Controller", "string", "Controller that is responsible for handling this class"),
    col("Parameters", "string", "A reference to a resource with additional parameters"),
    AGE,
), _ingress_class_row)

NETWORK_POLICY = Printer((
    NAME, col("Pod-Selector", "string", "@networking.v1.NetworkPolicySpec.podSelector"), AGE,
), lambda o, now: [name(o), format_label_selector(spec(o).get("podSelector") or {}), age(o, now)])


def _endpoint_slice_row(o: Obj, now: datetime) -> list[Any]:
    ports = o.get("ports") or []
    port_items = []
    for p in ports:
        if p.get("port") is not None:
            port_items.append(str(p["port"]))
        elif p.get("name") is not None:
            port_items.append(p["name"])
        else:
            port_items.append("*")
    addresses = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [name(o), o.get("addressType", ""), list_with_more(port_items, len(port_items)),
            list_with_more(addresses, len(addresses)), age(o, now)]


ENDPOINT_SLICE = Printer((
    NAME,
    col("AddressType", "string", "@discovery.v1.EndpointSlice.addressType"),
    col("Ports", "string", "@discovery.v1.EndpointSlice.ports"),
    col("Endpoints", "string", "@discovery.v1.EndpointSlice.endpoints"),
    AGE,
), _endpoint_slice_row)


def _webhooks(kind: str) -> Printer:
    return Printer((
        NAME,
        col("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
        AGE,
    ), lambda o, now: [name(o), len(o.get("webhooks") or []), age(o, now)])


MUTATING_WEBHOOK = _webhooks("Mutating")
VALIDATING_WEBHOOK = _webhooks("Validating")


def _csr_status(o: Obj) -> str:
    types = {c.get("type") for c in status(o).get("conditions") or []}
    text = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        text += ",Failed"
    if status(o).get("certificate"):
        text += ",Issued"
    return text


def _csr_row(o: Obj, now: datetime) -> list[Any]:
    sp = spec(o)
    seconds = sp.get("expirationSeconds")
    return [name(o), age(o, now), sp.get("signerName") or "<none>", sp.get("username", ""),
            human_duration(seconds) if seconds is not None else "<none>", _csr_status(o)]


CERTIFICATE_SIGNING_REQUEST = Printer((
    NAME, AGE,
    col("SignerName", "string", "@certificates.v1.CertificateSigningRequestSpec.signerName"),
    col("Requestor", "string", "@certificates.v1.CertificateSigningRequestSpec.request"),
    col("RequestedDuration", "string", "@certificates.v1.CertificateSigningRequestSpec.expirationSeconds"),
    col("Condition", "string", "@certificates.v1.CertificateSigningRequestStatus.conditions"),
), _csr_row)


def _api_service_row(o: Obj, now: datetime) -> list[Any]:
    svc = spec(o).get("service")
    service = f"{svc.get('namespace', '')}/{svc.get('name', '')}" if svc else "Local"
    available = "Unknown"
    for c in status(o).get("conditions") or []:
        if c.get("type") == "Available":
            st = c.get("status", "")
            available = f"{st} ({c['reason']})" if st != "True" and c.get("reason") else st
    return [name(o), service, available, age(o, now)]


API_SERVICE = Printer((
    NAME,
    col("Service", "string", "The reference to the service that hosts this API endpoint."),
    col("Available", "string", "Whether this service is available."),
    AGE,
), _api_service_row)
