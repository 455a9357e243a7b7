"""Validation of nodes, services, config maps, secrets, events and leases."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kubeling.api.errors import FieldError, duplicate, forbidden, invalid, required, unsupported
from kubeling.api.validation.meta import (
    GoValue,
    dns1123_label,
    label_value,
    nonnegative,
    positive,
    qualified_name,
)
from kubeling.api.validation.pod import PORT_RANGE, PROTOCOLS, TAINT_EFFECTS, port_name

Obj = dict[str, Any]

CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                  "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
MAX_DATA = 1024 * 1024
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def validate_taints(taints: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(taints or []):
        p = f"{path}[{i}]"
        errs.extend(invalid(f"{p}.key", t.get("key", ""), m) for m in qualified_name(t.get("key") or ""))
        if t.get("value"):
            errs.extend(invalid(f"{p}.value", t["value"], m) for m in label_value(t["value"]))
        eff = t.get("effect")
        if not eff:
            errs.append(required(f"{p}.effect"))
        elif eff not in TAINT_EFFECTS:
            errs.append(unsupported(f"{p}.effect", eff, TAINT_EFFECTS))
        key = (t.get("key") or "", eff or "")
        if key in seen:
            errs.append(FieldError("Duplicate value", p, "taints must be unique by key and effect pair",
                                   GoValue(f'core.Taint{{Key:"{key[0]}", Value:"{t.get("value") or ""}", '
                                           f'Effect:"{key[1]}", TimeAdded:<nil>}}'), True))
        seen.add(key)
    return errs


def _cidr(v: Any) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
        return "/" in v
    except (ValueError, TypeError):
        return False


def validate_node(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    cidrs = spec.get("podCIDRs") or []
    if spec.get("podCIDR") and not _cidr(spec["podCIDR"]):
        errs.append(invalid("spec.podCIDR", spec["podCIDR"], CIDR_MSG))
    for i, c in enumerate(cidrs):
        if not _cidr(c):
            errs.append(invalid(f"spec.podCIDRs[{i}]", c, CIDR_MSG))
    if len(cidrs) > 2:
        errs.append(invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"))
    errs.extend(validate_taints(spec.get("taints"), "spec.taints"))
    return errs


def validate_node_update(new: Obj, old: Obj) -> list[FieldError]:
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    errs: list[FieldError] = []
    if os_.get("podCIDRs") and ns.get("podCIDRs") != os_.get("podCIDRs"):
        errs.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
    if os_.get("providerID") and ns.get("providerID") != os_.get("providerID"):
        errs.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
    return errs


def validate_service(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    stype = spec.get("type")
    if stype not in SERVICE_TYPES:
        errs.append(unsupported("spec.type", stype or "", SERVICE_TYPES))
    ports = spec.get("ports") or []
    if stype != "ExternalName" and not ports and spec.get("clusterIP") != "None":
        errs.append(required("spec.ports"))
    if stype == "ExternalName" and not spec.get("externalName"):
        errs.append(required("spec.externalName"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{pp}.name"))
        if name:
            # service port names are DNS labels (e.g. kubectl's "80-8080"), not IANA service names
            errs.extend(invalid(f"{pp}.name", name, m) for m in dns1123_label(name))
            if name in names:
                errs.append(duplicate(f"{pp}.name", name))
            names.add(name)
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(invalid(f"{pp}.port", port or 0, PORT_RANGE))
        proto = p.get("protocol")
        if proto not in PROTOCOLS:
            errs.append(unsupported(f"{pp}.protocol", proto or "", PROTOCOLS))
        tp = p.get("targetPort")
        if isinstance(tp, int) and not 1 <= tp <= 65535:
            errs.append(invalid(f"{pp}.targetPort", tp, PORT_RANGE))
        elif isinstance(tp, str):
            errs.extend(invalid(f"{pp}.targetPort", tp, m) for m in port_name(tp))
    sa = spec.get("sessionAffinity")
    if sa not in ("ClientIP", "None"):
        errs.append(unsupported("spec.sessionAffinity", sa or "", ["ClientIP", "None"]))
    return errs


def _data_keys(obj: Obj, *, kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    fields = ("data", "binaryData") if kind == "ConfigMap" else ("data", "stringData")
    for field in fields:
        for k, v in (obj.get(field) or {}).items():
            p = f"{field}[{k}]"
            if not _CONFIG_KEY.match(k):
                errs.append(invalid(p, k, CONFIG_KEY_MSG))
            elif k in (".", ".."):
                errs.append(invalid(p, k, f"must not be '{k}'"))
            elif k.startswith(".."):
                errs.append(invalid(p, k, "must not start with '..'"))
            if len(k) > 253:
                errs.append(invalid(p, k, "must be no more than 253 characters"))
            total += len(v) if isinstance(v, str) else 0
            if kind == "ConfigMap" and field == "binaryData" and k in data:
                errs.append(invalid(p, k, "duplicate of key present in data"))
    del binary
    if total > MAX_DATA:
        errs.append(FieldError("Too long", "" if kind == "ConfigMap" else "data",
                               f"must have at most {MAX_DATA} bytes"))
    return errs


def validate_configmap(obj: Obj) -> list[FieldError]:
    return _data_keys(obj, kind="ConfigMap")


def validate_secret(obj: Obj) -> list[FieldError]:
    errs = _data_keys(obj, kind="Secret")
    data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
    t = obj.get("type")
    if t == "kubernetes.io/service-account-token":
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        if not ann.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif t == "kubernetes.io/dockercfg" and ".dockercfg" not in data:
        errs.append(required("data[.dockercfg]"))
    elif t == "kubernetes.io/dockerconfigjson" and ".dockerconfigjson" not in data:
        errs.append(required("data[.dockerconfigjson]"))
    elif t == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                errs.append(required(f"data[{k}]"))
    elif t == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        errs.append(required("data[username]"))
    elif t == "kubernetes.io/ssh-auth" and "ssh-privatekey" not in data:
        errs.append(required("data[ssh-privatekey]"))
    return errs


def validate_immutable_data(new: Obj, old: Obj, *, kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if kind == "Secret" and new.get("type") != old.get("type"):
        errs.append(invalid("type", new.get("type") or "", "field is immutable"))
    if old.get("immutable"):
        if not new.get("immutable"):
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        fields = ("data", "binaryData") if kind == "ConfigMap" else ("data",)
        for f in fields:
            if (new.get(f) or {}) != (old.get(f) or {}):
                errs.append(forbidden(f, "field is immutable when `immutable` is set"))
    return errs


def validate_lease(obj: Obj) -> list[FieldError]:
    # every node renews its Lease every 10 s: the checks' calls only for a value they reject
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        errs.extend(positive(duration, "spec.leaseDurationSeconds"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        errs.extend(nonnegative(transitions, "spec.leaseTransitions"))
    return errs


def validate_event(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    ns = (obj.get("metadata") or {}).get("namespace") or ""
    io = obj.get("involvedObject") or obj.get("regarding") or {}
    field = "involvedObject" if "involvedObject" in obj else "regarding"
    ions = io.get("namespace") or ""
    if ions and ions != ns:
        errs.append(invalid(f"{field}.namespace", ions, "does not match event.namespace"))
    return errs


def validate_namespace_update(new: Obj, old: Obj) -> list[FieldError]:
    return []
