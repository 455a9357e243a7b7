"""Workload validation: DaemonSet, StatefulSet, Deployment, ReplicaSet, Job, CronJob, RC."""

from __future__ import annotations

import re
from typing import Any

from kubeling.api.errors import FieldError, forbidden, invalid, required, unsupported
from kubeling.api.validation.meta import (
    IMMUTABLE,
    go_int_or_string,
    go_label_selector,
    go_string_map,
    nonnegative,
    selector_empty,
    selector_matches,
    validate_label_selector,
)
from kubeling.api.validation.pod import validate_pod_template_spec

Obj = dict[str, Any]

_PERCENT = re.compile(r"^[0-9]+%$")
PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
               "'93%', regex used for validation is '[0-9]+%')")


def _int_or_percent(v: Any) -> tuple[int, bool]:
    if isinstance(v, str) and _PERCENT.match(v):
        return int(v[:-1]), True
    return (v if isinstance(v, int) else 0), False


def _positive_int_or_percent(v: Any, path: str) -> list[FieldError]:
    if v is None:
        return []
    if isinstance(v, str):
        if not _PERCENT.match(v):
            return [invalid(path, v, PERCENT_MSG)]
        return []
    return [invalid(path, v, "must be greater than or equal to 0")] if v < 0 else []


def _not_over_100(v: Any, path: str) -> list[FieldError]:
    n, pct = _int_or_percent(v)
    return [invalid(path, v, "must not be greater than 100%")] if pct and n > 100 else []


def _selector_and_template(spec: Obj, kind: str, *, restart: list[str] | None = ("Always",),
                           check_selector: bool = True) -> list[FieldError]:
    errs: list[FieldError] = []
    sel = spec.get("selector")
    sel_errs: list[FieldError] = []
    if check_selector:
        if sel is None:
            errs.append(required("spec.selector"))
        else:
            sel_errs = validate_label_selector(sel, "spec.selector")
            errs.extend(sel_errs)
            if selector_empty(sel):
                errs.append(invalid("spec.selector", go_label_selector(sel),
                                    f"empty selector is invalid for {kind.lower()}"))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        errs.append(required("spec.template"))
        return errs
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    # upstream compares only a selector that converts (LabelSelectorAsSelector without error)
    if check_selector and sel is not None and not sel_errs and not selector_empty(sel) \
            and not selector_matches(sel, labels):
        errs.append(invalid("spec.template.metadata.labels", go_string_map(labels),
                            "`selector` does not match template `labels`"))
    errs.extend(validate_pod_template_spec(tmpl, "spec.template"))
    tspec = tmpl.get("spec") or {}
    rp = tspec.get("restartPolicy")
    if restart and rp and rp not in restart:
        errs.append(unsupported("spec.template.spec.restartPolicy", rp, list(restart)))
    if tspec.get("activeDeadlineSeconds") is not None and kind in ("DaemonSet", "StatefulSet", "ReplicaSet"):
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def validate_daemonset(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = _selector_and_template(spec, "DaemonSet")
    errs.extend(nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit"))
    us = spec.get("updateStrategy") or {}
    t = us.get("type")
    if t == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if ru is None:
            errs.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            p = "spec.updateStrategy.rollingUpdate"
            mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
            errs.extend(_positive_int_or_percent(mu, f"{p}.maxUnavailable"))
            errs.extend(_not_over_100(mu, f"{p}.maxUnavailable"))
            errs.extend(_positive_int_or_percent(ms, f"{p}.maxSurge"))
            errs.extend(_not_over_100(ms, f"{p}.maxSurge"))
            if _int_or_percent(mu)[0] == 0 and _int_or_percent(ms)[0] == 0:
                errs.append(invalid(f"{p}.maxUnavailable", go_int_or_string(mu), "may not be 0 when maxSurge is 0"))
    elif t != "OnDelete":
        errs.append(unsupported("spec.updateStrategy", t or "", ["RollingUpdate", "OnDelete"]))
    return errs


def validate_statefulset(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    pmp = spec.get("podManagementPolicy")
    if not pmp:
        errs.append(required("spec.podManagementPolicy"))
    elif pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'"))
    us = spec.get("updateStrategy") or {}
    t = us.get("type")
    if t == "RollingUpdate":
        ru = us.get("rollingUpdate") or {}
        errs.extend(nonnegative(ru.get("partition"), "spec.updateStrategy.rollingUpdate.partition"))
    elif t == "OnDelete":
        if us.get("rollingUpdate") is not None:
            errs.append(invalid("spec.updateStrategy.rollingUpdate", "",
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif not t:
        errs.append(required("spec.updateStrategy", ""))
    else:
        errs.append(invalid("spec.updateStrategy", t, "must be 'RollingUpdate' or 'OnDelete'"))
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        v = policy.get(key)
        if v and v not in ("Retain", "Delete"):
            errs.append(unsupported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", v, ["Retain", "Delete"]))
    errs.extend(nonnegative(spec.get("replicas"), "spec.replicas"))
    errs.extend(nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit"))
    ordinals = spec.get("ordinals") or {}
    errs.extend(nonnegative(ordinals.get("start"), "spec.ordinals.start"))
    errs.extend(_selector_and_template(spec, "StatefulSet"))
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        p = f"spec.volumeClaimTemplates[{i}]"
        pspec = (t or {}).get("spec") or {}
        if not pspec.get("accessModes"):
            errs.append(required(f"{p}.spec.accessModes", "at least 1 access mode is required"))
        if "storage" not in ((pspec.get("resources") or {}).get("requests") or {}):
            errs.append(required(f"{p}.spec.resources[storage]", ""))
    return errs


STS_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                 "minReadySeconds")


def validate_statefulset_update(new: Obj, old: Obj) -> list[FieldError]:
    ns, os_ = dict(new.get("spec") or {}), dict(old.get("spec") or {})
    for k in STS_UPDATABLE:
        ns.pop(k, None)
        os_.pop(k, None)
    if ns != os_:
        return [forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                          "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                          "'minReadySeconds' are forbidden")]
    return []


def validate_selector_immutable(new: Obj, old: Obj) -> list[FieldError]:
    ns, os_ = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if ns != os_:
        return [invalid("spec.selector", go_label_selector(ns), IMMUTABLE)]
    return []


def validate_deployment(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = nonnegative(spec.get("replicas"), "spec.replicas")
    errs.extend(_selector_and_template(spec, "Deployment"))
    st = spec.get("strategy") or {}
    t = st.get("type")
    if t == "Recreate":
        if st.get("rollingUpdate") is not None:
            errs.append(forbidden("spec.strategy.rollingUpdate",
                                  "may not be specified when strategy `type` is 'Recreate'"))
    elif t == "RollingUpdate":
        ru = st.get("rollingUpdate") or {}
        p = "spec.strategy.rollingUpdate"
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        errs.extend(_positive_int_or_percent(mu, f"{p}.maxUnavailable"))
        errs.extend(_positive_int_or_percent(ms, f"{p}.maxSurge"))
        if _int_or_percent(mu)[0] == 0 and _int_or_percent(ms)[0] == 0:
            errs.append(invalid(f"{p}.maxUnavailable", go_int_or_string(mu), "may not be 0 when `maxSurge` is 0"))
        errs.extend(_not_over_100(mu, f"{p}.maxUnavailable"))
    else:
        errs.append(unsupported("spec.strategy.type", t or "", ["Recreate", "RollingUpdate"]))
    errs.extend(nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit"))
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs.extend(nonnegative(pds, "spec.progressDeadlineSeconds"))
        if pds <= (spec.get("minReadySeconds") or 0):
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = nonnegative(spec.get("replicas"), "spec.replicas")
    errs.extend(nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds"))
    errs.extend(_selector_and_template(spec, "ReplicaSet"))
    return errs


def validate_replication_controller(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = nonnegative(spec.get("replicas"), "spec.replicas")
    sel = spec.get("selector") or {}
    if not sel:
        errs.append(required("spec.selector"))
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if sel and any(labels.get(k) != v for k, v in sel.items()):
            errs.append(invalid("spec.template.metadata.labels", go_string_map(labels),
                                "`selector` does not match template `labels`"))
        errs.extend(validate_pod_template_spec(tmpl, "spec.template"))
        rp = (tmpl.get("spec") or {}).get("restartPolicy")
        if rp and rp != "Always":
            errs.append(unsupported("spec.template.spec.restartPolicy", rp, ["Always"]))
    return errs


def _job_spec(spec: Obj, prefix: str = "spec") -> list[FieldError]:
    errs: list[FieldError] = []
    for k in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        errs.extend(nonnegative(spec.get(k), f"{prefix}.{k}"))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return [*errs, required(f"{prefix}.template")]
    errs.extend(validate_pod_template_spec(tmpl, f"{prefix}.template"))
    rp = (tmpl.get("spec") or {}).get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        errs.append(unsupported(f"{prefix}.template.spec.restartPolicy", rp or "", ["OnFailure", "Never"]))
    if spec.get("manualSelector") and spec.get("selector") is not None:
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if not selector_matches(spec["selector"], labels):
            errs.append(invalid(f"{prefix}.template.metadata.labels", go_string_map(labels),
                                "`selector` does not match template `labels`"))
    return errs


def validate_job(obj: Obj) -> list[FieldError]:
    return _job_spec(obj.get("spec") or {})


def validate_cronjob(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if not spec.get("schedule"):
        errs.append(required("spec.schedule"))
    cp = spec.get("concurrencyPolicy")
    if cp and cp not in ("Allow", "Forbid", "Replace"):
        errs.append(unsupported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
    for k in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs.extend(nonnegative(spec.get(k), f"spec.{k}"))
    jt = spec.get("jobTemplate") or {}
    errs.extend(_job_spec(jt.get("spec") or {}, "spec.jobTemplate.spec"))
    return errs


def validate_controller_revision(obj: Obj) -> list[FieldError]:
    errs = nonnegative(obj.get("revision"), "revision")
    if obj.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    return errs
