"""Server-side printing: meta.k8s.io Table responses, as kube-apiserver builds them.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the
cells it gets, so column sets, cell types and ages ("5s") are computed here, on the
server, exactly as upstream's printers do. Kinds without a printer get upstream's
default convertor: Name and "Created At" (an RFC3339 date). Each row carries the
object as PartialObjectMetadata, the whole object, or nothing (``includeObject``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeling.api.errors import bad_request
from kubeling.api.printers import cluster, core, rollouts, workloads
from kubeling.api.printers.common import Column, Printer, col, column_definitions
from kubeling.api.timeutil import format_rfc3339, parse_rfc3339
from kubeling.api.timeutil import now as utcnow

# One literal map, (group, kind) to printer; every version of a kind shares its printer.
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Pod"): workloads.POD,
    ("", "PodTemplate"): workloads.POD_TEMPLATE,
    ("", "ReplicationController"): workloads.REPLICATION_CONTROLLER,
    ("apps", "ReplicaSet"): workloads.REPLICA_SET,
    ("apps", "DaemonSet"): workloads.DAEMON_SET,
    ("apps", "StatefulSet"): workloads.STATEFUL_SET,
    ("apps", "Deployment"): workloads.DEPLOYMENT,
    ("apps", "ControllerRevision"): workloads.CONTROLLER_REVISION,
    ("batch", "Job"): workloads.JOB,
    ("batch", "CronJob"): workloads.CRON_JOB,
    ("policy", "PodDisruptionBudget"): workloads.POD_DISRUPTION_BUDGET,
    ("autoscaling", "HorizontalPodAutoscaler"): workloads.HORIZONTAL_POD_AUTOSCALER,
    ("", "Node"): core.NODE,
    ("", "Namespace"): core.NAMESPACE,
    ("", "Secret"): core.SECRET,
    ("", "ConfigMap"): core.CONFIG_MAP,
    ("", "ServiceAccount"): core.SERVICE_ACCOUNT,
    ("", "Service"): core.SERVICE,
    ("", "Endpoints"): core.ENDPOINTS,
    ("", "Event"): core.EVENT,
    ("events.k8s.io", "Event"): core.EVENT,
    ("", "PersistentVolume"): core.PERSISTENT_VOLUME,
    ("", "PersistentVolumeClaim"): core.PERSISTENT_VOLUME_CLAIM,
    ("", "ResourceQuota"): core.RESOURCE_QUOTA,
    ("rbac.authorization.k8s.io", "RoleBinding"): cluster.ROLE_BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): cluster.CLUSTER_ROLE_BINDING,
    ("coordination.k8s.io", "Lease"): cluster.LEASE,
    ("scheduling.k8s.io", "PriorityClass"): cluster.PRIORITY_CLASS,
    ("node.k8s.io", "RuntimeClass"): cluster.RUNTIME_CLASS,
    ("storage.k8s.io", "StorageClass"): cluster.STORAGE_CLASS,
    ("storage.k8s.io", "CSIDriver"): cluster.CSI_DRIVER,
    ("storage.k8s.io", "CSINode"): cluster.CSI_NODE,
    ("storage.k8s.io", "VolumeAttachment"): cluster.VOLUME_ATTACHMENT,
    ("networking.k8s.io", "Ingress"): cluster.INGRESS,
    ("networking.k8s.io", "IngressClass"): cluster.INGRESS_CLASS,
    ("networking.k8s.io", "NetworkPolicy"): cluster.NETWORK_POLICY,
    ("discovery.k8s.io", "EndpointSlice"): cluster.ENDPOINT_SLICE,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): cluster.MUTATING_WEBHOOK,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): cluster.VALIDATING_WEBHOOK,
    ("certificates.k8s.io", "CertificateSigningRequest"): cluster.CERTIFICATE_SIGNING_REQUEST,
    ("apiregistration.k8s.io", "APIService"): cluster.API_SERVICE,
    ("rollouts.kubeling.io", "RolloutPlan"): rollouts.ROLLOUT_PLAN,
}

ZERO_TIME = "0001-01-01T00:00:00Z"


def _created_at(obj: dict[str, Any], now: datetime) -> list[Any]:
    created = parse_rfc3339((obj.get("metadata") or {}).get("creationTimestamp"))
    return [(obj.get("metadata") or {}).get("name", ""), format_rfc3339(created) if created else ZERO_TIME]


# rest.defaultTableConvertor, used by every kind without a printer (Roles, CRDs, LimitRanges, ...)
DEFAULT = Printer((
    col("Name", "string", "@meta.v1.ObjectMeta.name", fmt="name"),
    col("Created At", "date", "@meta.v1.ObjectMeta.creationTimestamp"),
), _created_at)


def printer_for(resource: Any) -> Printer:
    return PRINTERS.get((resource.group, resource.kind), DEFAULT)


def columns_for(resource: Any) -> list[dict[str, Any]]:
    return [dict(c) for c in column_definitions(printer_for(resource).columns)]


def _row_object(obj: dict[str, Any], include_object: str, table_version: str) -> Any:
    if include_object in ("Metadata", ""):
        return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{table_version}",
                "metadata": obj.get("metadata") or {}}
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    raise bad_request(f'unrecognized includeObject value: "{include_object}"')


def to_table(resource: Any, objects: list[dict[str, Any]], *, wide: bool = False,
             include_object: str = "Metadata", now: datetime | None = None,
             list_meta: dict[str, Any] | None = None, table_version: str = "v1",
             no_headers: bool = False) -> dict[str, Any]:
    """Build the Table for ``objects`` of ``resource``.

    All columns are always sent (kubectl hides priority > 0 unless ``-o wide``), so
    ``wide`` changes nothing. ``list_meta`` carries resourceVersion/continue of a list.
    """
    del wide
    printer = printer_for(resource)
    current = now or utcnow()
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.row(obj, current)}
        if printer.conditions is not None and (conds := printer.conditions(obj)):
            row["conditions"] = conds
        row["object"] = _row_object(obj, include_object, table_version)
        rows.append(row)
    table: dict[str, Any] = {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}",
                             "metadata": dict(list_meta or {})}
    if not no_headers:
        table["columnDefinitions"] = [dict(c) for c in column_definitions(printer.columns)]
    table["rows"] = rows
    return table


# ---------------------------------------------------------------- content negotiation

def _media_ranges(accept: str) -> list[tuple[float, str, dict[str, str]]]:
    out = []
    for i, clause in enumerate(accept.split(",")):
        parts = [p.strip() for p in clause.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str] = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        out.append((q, i, parts[0].lower(), params))
    out.sort(key=lambda t: (-t[0], t[1]))  # highest q first, then the client's order
    return [(q, mt, params) for q, _, mt, params in out]


def table_version(accept: str | None) -> str | None:
    """The meta.k8s.io version of Table the client prefers, or None when it wants the plain object.

    The first acceptable alternative wins: a Table clause with a known version, or a
    plain JSON/YAML/wildcard type (which means no Table).
    """
    for q, media_type, params in _media_ranges(accept or ""):
        if q <= 0:
            continue
        as_kind = params.get("as")
        if as_kind == "Table":
            if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
                return params["v"]
            continue
        if as_kind:
            continue  # PartialObjectMetadata(List) is not a table
        if media_type in ("application/json", "application/yaml", "application/*", "*/*",
                          "application/vnd.kubernetes.protobuf"):
            return None
    return None


def negotiate_table(accept: str | None) -> bool:
    """True when the Accept header asks for a meta.k8s.io Table."""
    return table_version(accept) is not None


__all__ = ["DEFAULT", "PRINTERS", "Column", "columns_for", "negotiate_table", "printer_for",
           "table_version", "to_table"]
