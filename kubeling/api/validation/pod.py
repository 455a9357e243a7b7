"""PodSpec and PodTemplateSpec validation (pkg/apis/core/validation), upstream messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Set
from typing import Any

from kubeling.api import quantity
from kubeling.api.errors import FieldError, duplicate, forbidden, invalid, not_found, required, unsupported
from kubeling.api.validation.meta import (
    _VALID_DNS_LABELS,
    _VALID_LABEL_VALUES,
    _VALID_QUALIFIED_NAMES,
    _VALID_SUBDOMAINS,
    dns1123_label,
    dns1123_subdomain,
    label_value,
    nonnegative,
    plain_labels,
    qualified_name,
    validate_annotations,
    validate_labels,
)

Obj = dict[str, Any]

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                   "FileOrCreate", "Socket"]
PORT_RANGE = "must be between 1 and 65535, inclusive"
NODE_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")

VOLUME_SOURCES = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
                  "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
                  "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
                  "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
                  "storageos", "csi", "ephemeral", "image")
_VOLUME_SOURCE_SET = frozenset(VOLUME_SOURCES)

_IANA_ALNUM = re.compile(r"^[-a-z0-9]+$")
_IANA_LETTER = re.compile(r"[a-z]")


def port_name(name: str) -> list[str]:
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _IANA_ALNUM.match(name):
        errs.append("must contain only alphanumeric characters (a-z, 0-9), and hyphens (-)")
    if not _IANA_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _port_number(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not 1 <= value <= 65535:
        return [invalid(path, value, PORT_RANGE)]
    return []


def _int_or_port_name(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        return [invalid(path, value, m) for m in port_name(value)]
    return _port_number(value if value is not None else 0, path)


def _ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, p in enumerate(ports or []):
        pp = f"{path}[{i}]"
        name = p.get("name")
        if name:
            errs.extend(invalid(f"{pp}.name", name, m) for m in port_name(name))
            if name in names:
                errs.append(duplicate(f"{pp}.name", name))
            names.add(name)
        cp = p.get("containerPort")
        if not cp:
            errs.append(required(f"{pp}.containerPort"))
        else:
            errs.extend(_port_number(cp, f"{pp}.containerPort"))
        if p.get("hostPort"):
            errs.extend(_port_number(p["hostPort"], f"{pp}.hostPort"))
        proto = p.get("protocol")
        if not proto:
            errs.append(required(f"{pp}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(unsupported(f"{pp}.protocol", proto, PROTOCOLS))
    return errs


def _resources(res: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(res, dict):
        return errs
    parsed: dict[str, dict[str, Any]] = {}
    for part in ("limits", "requests"):
        parsed[part] = {}
        for name, val in (res.get(part) or {}).items():
            p = f"{path}.{part}[{name}]"
            errs.extend(invalid(p, name, m) for m in qualified_name(name))
            try:
                q = quantity.parse_value(val)
            except quantity.QuantityError as e:
                errs.append(invalid(p, val, str(e)))
                continue
            if q < 0:
                errs.append(invalid(p, str(val), "must be greater than or equal to 0"))
            parsed[part][name] = (q, val)
    for name, (q, val) in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and q > lim[0]:
            errs.append(invalid(f"{path}.requests[{name}]", quantity.canonical(val),
                                f"must be less than or equal to {name} limit of {quantity.canonical(lim[1])}"))
    return errs


def _probe(probe: Any, path: str, *, liveness: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(probe, dict):
        return errs
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        errs.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        errs.append(forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.extend(nonnegative(probe.get(f), f"{path}.{f}"))
    if liveness and probe.get("successThreshold", 1) != 1:
        errs.append(invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1"))
    for h in ("httpGet", "tcpSocket"):
        if isinstance(probe.get(h), dict):
            errs.extend(_int_or_port_name(probe[h].get("port"), f"{path}.{h}.port"))
    return errs


def _env(env: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, e in enumerate(env or []):
        p = f"{path}[{i}]"
        name = e.get("name") or ""
        if not name:
            errs.append(required(f"{p}.name"))
        elif "=" in name or not name.isprintable():
            errs.append(invalid(f"{p}.name", name, "a valid environment variable name must consist only of "
                                "printable ASCII characters other than '='"))
        vf = e.get("valueFrom")
        if isinstance(vf, dict):
            n = sum(1 for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if vf.get(k))
            if n == 0:
                errs.append(invalid(f"{p}.valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                    "`configMapKeyRef` or `secretKeyRef`"))
            elif n > 1:
                errs.append(invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time"))
            if e.get("value"):
                errs.append(invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty"))
    return errs


def _container(errs: list[FieldError], c: Obj, path: str, key: str, i: int, volumes: Set[str],
               host_network: bool, regular: bool) -> None:
    """Appends the errors of container ``path.key[i]``; the path is built only when there are some."""
    name = c.get("name")
    pol = c.get("imagePullPolicy")
    tmp = c.get("terminationMessagePolicy")
    if not (name and type(name) is str and (name in _VALID_DNS_LABELS or not dns1123_label(name))
            and c.get("image") and pol in PULL_POLICIES and tmp in _TERMINATION_MESSAGE_POLICIES):
        errs.extend(_container_fields(c, f"{path}.{key}[{i}]"))
    # the checks below find nothing in an absent or empty field: skipped, with the path they would build
    ports, env, res = c.get("ports"), c.get("env"), c.get("resources")
    if ports or env or res:
        p = f"{path}.{key}[{i}]"
        if ports:
            errs.extend(_ports(ports, f"{p}.ports"))
            if host_network:
                for j, port in enumerate(ports):
                    hp = port.get("hostPort")
                    if hp and hp != port.get("containerPort"):
                        errs.append(invalid(f"{p}.ports[{j}].hostPort", hp,
                                            "must match `containerPort` when `hostNetwork` is true"))
        if env:
            errs.extend(_env(env, f"{p}.env"))
        if res:
            errs.extend(_resources(res, f"{p}.resources"))
    mounts = c.get("volumeMounts")
    if mounts:
        seen: set[str] = set()
        for m in mounts:  # a first pass without paths: the usual mounts have no error
            mname, mp = m.get("name"), m.get("mountPath")
            if not mname or mname not in volumes or not mp or mp in seen:
                errs.extend(_mount_errors(mounts, volumes, f"{path}.{key}[{i}].volumeMounts"))
                break
            seen.add(mp)
    if regular and ("livenessProbe" in c or "readinessProbe" in c or "startupProbe" in c):
        for pkey, liveness in _PROBES:
            probe = c.get(pkey)
            if isinstance(probe, dict):
                errs.extend(_probe(probe, f"{path}.{key}[{i}].{pkey}", liveness=liveness))


_TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]


def _container_fields(c: Obj, path: str) -> list[FieldError]:
    """The errors of a container's name, image, imagePullPolicy and terminationMessagePolicy."""
    errs: list[FieldError] = []
    name = c.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        msgs = dns1123_label(name)
        if msgs:
            errs.extend(invalid(f"{path}.name", name, m) for m in msgs)
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    pol = c.get("imagePullPolicy")
    if not pol:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pol not in PULL_POLICIES:
        errs.append(unsupported(f"{path}.imagePullPolicy", pol, PULL_POLICIES))
    tmp = c.get("terminationMessagePolicy")
    if not tmp:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif tmp not in _TERMINATION_MESSAGE_POLICIES:
        errs.append(unsupported(f"{path}.terminationMessagePolicy", tmp, _TERMINATION_MESSAGE_POLICIES))
    return errs


def _mount_errors(mounts: Any, volumes: Set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, m in enumerate(mounts):
        mname = m.get("name") or ""
        mp = m.get("mountPath") or ""
        if not mname or mname not in volumes or not mp or mp in seen:
            p = f"{path}[{i}]"  # only a mount with an error needs its path
            if not mname:
                errs.append(required(f"{p}.name"))
            elif mname not in volumes:
                errs.append(not_found(f"{p}.name", mname))
            if not mp:
                errs.append(required(f"{p}.mountPath"))
            elif mp in seen:
                errs.append(invalid(f"{p}.mountPath", mp, "must be unique"))
        seen.add(mp)
    return errs


_PROBES = (("livenessProbe", True), ("readinessProbe", False), ("startupProbe", True))


def _plain_volume_names(vols: Any) -> set[str] | None:
    """The volumes' names when no volume has an error (named validly and uniquely, with one source
    whose check finds nothing: the usual volumes); None otherwise, for _volumes to say what is wrong."""
    names: set[str] = set()
    for v in vols:
        name = v.get("name")
        if type(name) is not str or name in names or (name not in _VALID_DNS_LABELS and dns1123_label(name)):
            return None
        names.add(name)
        source = None
        for key in v:
            if key in _VOLUME_SOURCE_SET and v[key] is not None:
                if source is not None:
                    return None
                source = key
        if source is None:
            return None
        check = _VOLUME_SOURCE_CHECKS.get(source)
        if check is not None and check(v[source], ""):  # any error: the path does not matter here
            return None
    return names


def _volumes(vols: Any, path: str) -> tuple[list[FieldError], set[str]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, v in enumerate(vols or []):
        name = v.get("name") or ""
        if not name:
            errs.append(required(f"{path}[{i}].name"))
        else:
            msgs = dns1123_label(name)
            if msgs:
                errs.extend(invalid(f"{path}[{i}].name", name, m) for m in msgs)
            if name in names:
                errs.append(duplicate(f"{path}[{i}].name", name))
        names.add(name)
        sources = [s for s in v if s in _VOLUME_SOURCE_SET and v[s] is not None]
        if len(sources) == 1:  # the usual case: only the one source's checks can say anything
            key = sources[0]
            check = _VOLUME_SOURCE_CHECKS.get(key)
            if check is not None:
                errs.extend(check(v[key], f"{path}[{i}].{key}"))
        else:
            errs.extend(_volume_sources(v, sources, f"{path}[{i}]"))
            for key, check in _VOLUME_SOURCE_CHECKS.items():
                if key in v:
                    errs.extend(check(v[key], f"{path}[{i}].{key}"))
    return errs, names


def _volume_sources(v: Obj, sources: list[str], p: str) -> list[FieldError]:
    """The error of a volume with no source or with more than one."""
    if len(sources) > 1:  # the error names the second in upstream's field order
        sources = [s for s in VOLUME_SOURCES if v.get(s) is not None]
    if not sources:
        return [required(p, "must specify a volume type")]
    if len(sources) > 1:
        return [forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type")]
    return []


def _host_path(hp: Any, p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if isinstance(hp, dict):
        if not hp.get("path"):
            errs.append(required(f"{p}.path"))
        if hp.get("type") not in HOST_PATH_TYPES and hp.get("type") is not None:
            errs.append(unsupported(f"{p}.type", hp["type"], HOST_PATH_TYPES))
    return errs


def _default_mode(src: Any, p: str) -> list[FieldError]:
    if isinstance(src, dict):
        mode = src.get("defaultMode")
        if isinstance(mode, int) and not 0 <= mode <= 0o777:
            return [invalid(f"{p}.defaultMode", mode,
                            "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _claim(pvc: Any, p: str) -> list[FieldError]:
    if isinstance(pvc, dict) and not pvc.get("claimName"):
        return [required(f"{p}.claimName")]
    return []


def _empty_dir(ed: Any, p: str) -> list[FieldError]:
    if isinstance(ed, dict) and ed.get("sizeLimit") is not None and not quantity.is_valid(ed["sizeLimit"]):
        return [invalid(f"{p}.sizeLimit", ed["sizeLimit"], quantity.FORMAT_ERROR)]
    return []


# volume source -> its checks (path: the volume's path plus the source's name), in upstream's order
_VOLUME_SOURCE_CHECKS: dict[str, Callable[[Any, str], list[FieldError]]] = {
    "hostPath": _host_path, "secret": _default_mode, "configMap": _default_mode, "downwardAPI": _default_mode,
    "projected": _default_mode, "persistentVolumeClaim": _claim, "emptyDir": _empty_dir,
}


def _plain_tolerations(tols: Any) -> bool:
    """True when validate_tolerations finds nothing (as in the tolerations admission adds to every
    pod): a first pass without paths, lists or calls for strings already known valid."""
    for t in tols:
        key, op, eff = t.get("key"), t.get("operator") or "Equal", t.get("effect")
        if key:
            if type(key) is not str or (key not in _VALID_QUALIFIED_NAMES and qualified_name(key)):
                return False
        elif op != "Exists":
            return False
        if op == "Exists":
            if t.get("value"):
                return False
        elif op == "Equal":
            value = t.get("value")
            if value and (type(value) is not str or (value not in _VALID_LABEL_VALUES and label_value(value))):
                return False
        else:
            return False
        if eff != "NoExecute" and (t.get("tolerationSeconds") is not None or eff and eff not in TAINT_EFFECTS):
            return False
    return True


def validate_tolerations(tols: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tols or []):
        key = t.get("key") or ""
        op = t.get("operator") or "Equal"
        if key:
            msgs = qualified_name(key)
            if msgs:
                errs.extend(invalid(f"{path}[{i}].key", key, m) for m in msgs)
        elif op != "Exists":
            errs.append(invalid(f"{path}[{i}].operator", op, "operator must be Exists when `key` is empty, "
                                'which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(invalid(f"{path}[{i}].effect", t.get("effect") or "",
                                "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op == "Equal":
            msgs = label_value(t.get("value") or "")
            if msgs:
                errs.extend(invalid(f"{path}[{i}].value", t.get("value") or "", m) for m in msgs)
        elif op == "Exists":
            if t.get("value"):
                errs.append(invalid(f"{path}[{i}].operator", t,
                                    "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(unsupported(f"{path}[{i}].operator", op, ["Equal", "Exists"]))
        eff = t.get("effect")
        if eff and eff not in TAINT_EFFECTS:
            errs.append(unsupported(f"{path}[{i}].effect", eff, TAINT_EFFECTS))
    return errs


def _node_selector_requirement(req: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    op = req.get("operator")
    values = req.get("values") or []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(f"{path}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(required(f"{path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
    else:
        errs.append(invalid(f"{path}.operator", op, "not a valid selector operator"))
    errs.extend(invalid(f"{path}.key", req.get("key", ""), m) for m in qualified_name(req.get("key") or ""))
    return errs


def _node_selector_term(term: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for j, req in enumerate(term.get("matchExpressions") or []):
        errs.extend(_node_selector_requirement(req, f"{path}.matchExpressions[{j}]"))
    for j, req in enumerate(term.get("matchFields") or []):
        p = f"{path}.matchFields[{j}]"
        if req.get("operator") not in ("In", "NotIn"):
            errs.append(invalid(f"{p}.operator", req.get("operator"), "not a valid selector operator"))
        elif len(req.get("values") or []) != 1:
            errs.append(required(f"{p}.values", "must be only one value when `operator` is 'In' or 'NotIn' "
                                 "for node field selector"))
        if req.get("key") != "metadata.name":
            errs.append(invalid(f"{p}.key", req.get("key") or "", "not a valid field selector key"))
    return errs


def _plain_node_affinity(aff: Any) -> bool:
    """True when validate_affinity finds nothing in an affinity of required node selector terms only
    (the DaemonSet controller's matchFields on metadata.name, nodeSelector-like matchExpressions): a
    first pass without paths. Any other shape takes the full walk."""
    if type(aff) is not dict or len(aff) != 1:
        return False
    na = aff.get("nodeAffinity")
    if type(na) is not dict or len(na) != 1:
        return False
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if type(req) is not dict:
        return False
    terms = req.get("nodeSelectorTerms")
    if not terms:
        return False
    for term in terms:
        if not term:
            return False
        for r in term.get("matchExpressions") or ():
            op, values, key = r.get("operator"), r.get("values"), r.get("key")
            if op in ("In", "NotIn"):
                if not values:
                    return False
            elif op in ("Exists", "DoesNotExist"):
                if values:
                    return False
            elif op not in ("Gt", "Lt") or not values or len(values) != 1:
                return False
            if not key or type(key) is not str or (key not in _VALID_QUALIFIED_NAMES and qualified_name(key)):
                return False
        for r in term.get("matchFields") or ():
            if r.get("operator") not in ("In", "NotIn") or len(r.get("values") or ()) != 1 \
                    or r.get("key") != "metadata.name":
                return False
    return True


def validate_affinity(aff: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(aff, dict):
        return errs
    na = aff.get("nodeAffinity")
    if isinstance(na, dict):
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        rp = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        if isinstance(req, dict):
            terms = req.get("nodeSelectorTerms") or []
            if not terms:
                errs.append(required(f"{rp}.nodeSelectorTerms", "must have at least one node selector term"))
            for i, t in enumerate(terms):
                errs.extend(_node_selector_term(t or {}, f"{rp}.nodeSelectorTerms[{i}]"))
        pp = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
        for i, pref in enumerate(na.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            w = pref.get("weight", 0)
            if not 1 <= w <= 100:
                errs.append(invalid(f"{pp}[{i}].weight", w, "must be in the range 1-100"))
            errs.extend(_node_selector_term(pref.get("preference") or {}, f"{pp}[{i}].preference"))
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = aff.get(kind)
        if not isinstance(pa, dict):
            continue
        for i, term in enumerate(pa.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            p = f"{path}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"
            if not term.get("topologyKey"):
                errs.append(required(f"{p}.topologyKey", "can not be empty"))
        for i, pref in enumerate(pa.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            p = f"{path}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            w = pref.get("weight", 0)
            if not 1 <= w <= 100:
                errs.append(invalid(f"{p}.weight", w, "must be in the range 1-100"))
            if not (pref.get("podAffinityTerm") or {}).get("topologyKey"):
                errs.append(required(f"{p}.podAffinityTerm.topologyKey", "can not be empty"))
    return errs


def validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [required(path)]
    # absent or empty fields are skipped below: their checks would find nothing, and skipping them
    # saves building the paths those checks are given; the lists most pods carry (volumes,
    # tolerations, labels) take a first pass that needs no paths, and only one with an error the full one
    vols = spec.get("volumes")
    if vols:
        volumes = _plain_volume_names(vols)
        if volumes is None:
            verrs, volumes = _volumes(vols, f"{path}.volumes")
            errs.extend(verrs)
    else:
        volumes = _NO_VOLUMES
    host_network = bool(spec.get("hostNetwork"))
    names: set[str] = set()
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    init = spec.get("initContainers")
    if init:
        _containers(errs, init, path, "initContainers", volumes, host_network, True, names)
    if containers:
        _containers(errs, containers, path, "containers", volumes, host_network, True, names)
    ephemeral = spec.get("ephemeralContainers")
    if ephemeral:
        _containers(errs, ephemeral, path, "ephemeralContainers", volumes, host_network, False, names)
    rp = spec.get("restartPolicy")
    if not rp:
        errs.append(required(f"{path}.restartPolicy"))
    elif rp not in RESTART_POLICIES:
        errs.append(unsupported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if not dp:
        errs.append(required(f"{path}.dnsPolicy"))
    elif dp not in DNS_POLICIES:
        errs.append(unsupported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    elif dp == "None" and not spec.get("dnsConfig"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not 1 <= ads <= 2147483647:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
    tgps = spec.get("terminationGracePeriodSeconds")
    if isinstance(tgps, int) and tgps < 0:
        errs.extend(nonnegative(tgps, f"{path}.terminationGracePeriodSeconds"))
    node_selector = spec.get("nodeSelector")
    if node_selector and not plain_labels(node_selector):
        errs.extend(validate_labels(node_selector, f"{path}.nodeSelector"))
    tols = spec.get("tolerations")
    if tols and not _plain_tolerations(tols):
        errs.extend(validate_tolerations(tols, f"{path}.tolerations"))
    aff = spec.get("affinity")
    if aff and not _plain_node_affinity(aff):
        errs.extend(validate_affinity(aff, f"{path}.affinity"))
    if not _plain_spec_names(spec):
        for key, check in _SPEC_NAMES:
            v = spec.get(key)
            if v:
                msgs = check(v)
                if msgs:
                    errs.extend(invalid(f"{path}.{key}", v, m) for m in msgs)
    secrets = spec.get("imagePullSecrets")
    if secrets:
        for i, s in enumerate(secrets):
            if not s.get("name"):
                errs.append(required(f"{path}.imagePullSecrets[{i}].name"))
    return errs


_NO_VOLUMES: frozenset[str] = frozenset()


def _containers(errs: list[FieldError], cs: Any, path: str, key: str, volumes: Set[str],
                host_network: bool, regular: bool, names: set[str]) -> None:
    """Appends the errors of the containers in list ``key``; ``names`` collects their names across lists."""
    for i, c in enumerate(cs):
        _container(errs, c, path, key, i, volumes, host_network, regular)
        n = c.get("name")
        if n:
            if n in names:
                errs.append(duplicate(f"{path}.{key}[{i}].name", n))
            names.add(n)


# spec fields naming things, with the check of each, in upstream's order
_SPEC_NAMES = (("serviceAccountName", dns1123_subdomain), ("nodeName", dns1123_subdomain),
               ("priorityClassName", dns1123_subdomain), ("hostname", dns1123_label), ("subdomain", dns1123_label))


def _plain_spec_names(spec: Obj) -> bool:
    """True when none of _SPEC_NAMES has an error: the two every pod has (serviceAccountName and, once
    bound, nodeName) known valid, the others absent."""
    if "priorityClassName" in spec or "hostname" in spec or "subdomain" in spec:
        return False
    for v in (spec.get("serviceAccountName"), spec.get("nodeName")):
        if v and (type(v) is not str or v not in _VALID_SUBDOMAINS):
            return False
    return True


def validate_pod_template_spec(tmpl: Any, path: str) -> list[FieldError]:
    if not isinstance(tmpl, dict):
        return [required(path)]
    meta = tmpl.get("metadata") or {}
    errs = validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations"))
    errs.extend(validate_pod_spec(tmpl.get("spec"), f"{path}.spec"))
    return errs


def pod_qos_class(pod: Obj) -> str:
    """BestEffort / Burstable / Guaranteed as upstream's GetPodQOS (cpu and memory only)."""
    spec = pod.get("spec") or {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        res = c.get("resources") or {}
        creq, clim = res.get("requests") or {}, res.get("limits") or {}
        seen = set()
        for name in ("cpu", "memory"):
            if name in creq and _positive(creq[name]):
                requests[name] = requests.get(name, 0) + quantity.parse_value(creq[name])
            if name in clim and _positive(clim[name]):
                limits[name] = limits.get(name, 0) + quantity.parse_value(clim[name])
                seen.add(name)
        if seen != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, req in requests.items():
            if limits.get(name) != req:
                guaranteed = False
                break
    if guaranteed and len(limits) == len(requests):
        return "Guaranteed"
    return "Burstable"


def _positive(v: Any) -> bool:
    try:
        return quantity.parse_value(v) > 0
    except quantity.QuantityError:
        return False
