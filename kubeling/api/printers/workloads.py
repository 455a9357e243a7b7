"""Table rows for pods and the controllers that own pods (apps, batch, policy, autoscaling)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubeling.api.printers.common import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    Obj,
    Printer,
    age,
    bool_ptr,
    col,
    deleting,
    layout_containers,
    meta,
    name,
    spec,
    status,
    template_containers,
)
from kubeling.api.selectors import format_label_selector, format_labels
from kubeling.api.timeutil import human_duration, parse_rfc3339, translate_timestamp_since

NODE_UNREACHABLE_REASON = "NodeLost"

# ---------------------------------------------------------------- Pod


def _restartable(container: Obj | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list[Obj] | None, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in conditions or [])


def _later(current: datetime | None, state: Obj | None) -> datetime | None:
    finished = parse_rfc3339(((state or {}).get("terminated") or {}).get("finishedAt"))
    if finished and (current is None or finished > current):
        return finished
    return current


def _terminated_reason(term: Obj, prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_status_reason(pod: Obj) -> tuple[str, int, int, int, datetime | None]:
    """STATUS, ready and total containers, restarts and last restart time, as kubectl shows them."""
    sp, st = spec(pod), status(pod)
    phase = st.get("phase", "")
    reason = st.get("reason") or phase
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {c.get("name"): c for c in sp.get("initContainers") or []}
    total = len(sp.get("containers") or []) + sum(1 for c in init_specs.values() if _restartable(c))
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    initializing = False
    init_count = len(sp.get("initContainers") or [])
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, cs.get("lastState"))
        sidecar = _restartable(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = _later(last_sidecar_restart, cs.get("lastState"))
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{init_count}"
        initializing = True
        break

    if not initializing or _condition_true(st.get("conditions"), "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, cs.get("lastState"))
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None:
                reason = _terminated_reason(term)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(st.get("conditions"), "Ready") else "NotReady"

    if deleting(pod) and st.get("reason") == NODE_UNREACHABLE_REASON:
        reason = "Unknown"
    elif deleting(pod) and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def pod_row(pod: Obj, now: datetime) -> list[Any]:
    reason, ready, total, restarts, last_restart = pod_status_reason(pod)
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    st, sp = status(pod), spec(pod)
    ips = st.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips else st.get("podIP")) or "<none>"
    gates = sp.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in reversed(st.get("conditions") or [])}
        ok = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{ok}/{len(gates)}"
    return [name(pod), f"{ready}/{total}", reason, restarts_text, age(pod, now), pod_ip,
            sp.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>", gates_text]


def pod_conditions(pod: Obj) -> list[dict[str, str]] | None:
    phase = status(pod).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


POD = Printer((
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted "
        "and when the last container in this pod has restarted."),
    AGE,
    col("IP", "string", "@core.v1.PodStatus.podIP", 1),
    col("Node", "string", "@core.v1.PodSpec.nodeName", 1),
    col("Nominated Node", "string", "@core.v1.PodStatus.nominatedNodeName", 1),
    col("Readiness Gates", "string", "@core.v1.PodSpec.readinessGates", 1),
), pod_row, pod_conditions)


def _pod_template_row(obj: Obj, now: datetime) -> list[Any]:
    tmpl = obj.get("template") or {}
    names, images = layout_containers((tmpl.get("spec") or {}).get("containers"))
    return [name(obj), names, images, format_labels((tmpl.get("metadata") or {}).get("labels"))]


POD_TEMPLATE = Printer((
    NAME,
    col("Containers", "string", "Names of each container in the template."),
    col("Images", "string", "Images referenced by each container in the template."),
    col("Pod Labels", "string", "The labels for the pod template."),
), _pod_template_row)

# ---------------------------------------------------------------- controllers


def _rs_row(obj: Obj, now: datetime) -> list[Any]:
    st = status(obj)
    names, images = layout_containers(template_containers(obj))
    return [name(obj), spec(obj).get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(obj, now), names, images, format_label_selector(spec(obj).get("selector"))]


REPLICA_SET = Printer((
    NAME,
    col("Desired", "integer", "@apps.v1.ReplicaSetSpec.replicas"),
    col("Current", "integer", "@apps.v1.ReplicaSetStatus.replicas"),
    col("Ready", "integer", "@apps.v1.ReplicaSetStatus.readyReplicas"),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@apps.v1.ReplicaSetSpec.selector", 1),
), _rs_row)


def _rc_row(obj: Obj, now: datetime) -> list[Any]:
    st = status(obj)
    names, images = layout_containers(template_containers(obj))
    return [name(obj), spec(obj).get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(obj, now), names, images, format_labels(spec(obj).get("selector"))]


REPLICATION_CONTROLLER = Printer((
    NAME,
    col("Desired", "integer", "@core.v1.ReplicationControllerSpec.replicas"),
    col("Current", "integer", "@core.v1.ReplicationControllerStatus.replicas"),
    col("Ready", "integer", "@core.v1.ReplicationControllerStatus.readyReplicas"),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@core.v1.ReplicationControllerSpec.selector", 1),
), _rc_row)


def _ds_row(obj: Obj, now: datetime) -> list[Any]:
    st = status(obj)
    names, images = layout_containers(template_containers(obj))
    node_selector = ((spec(obj).get("template") or {}).get("spec") or {}).get("nodeSelector")
    return [name(obj), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            format_labels(node_selector), age(obj, now), names, images,
            format_label_selector(spec(obj).get("selector"))]


DAEMON_SET = Printer((
    NAME,
    col("Desired", "integer", "@apps.v1.DaemonSetStatus.desiredNumberScheduled"),
    col("Current", "integer", "@apps.v1.DaemonSetStatus.currentNumberScheduled"),
    col("Ready", "integer", "@apps.v1.DaemonSetStatus.numberReady"),
    col("Up-to-date", "integer", "@apps.v1.DaemonSetStatus.updatedNumberScheduled"),
    col("Available", "integer", "@apps.v1.DaemonSetStatus.numberAvailable"),
    col("Node Selector", "string", "@core.v1.PodSpec.nodeSelector"),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@apps.v1.DaemonSetSpec.selector", 1),
), _ds_row)


def _sts_row(obj: Obj, now: datetime) -> list[Any]:
    names, images = layout_containers(template_containers(obj))
    ready = f"{status(obj).get('readyReplicas', 0)}/{spec(obj).get('replicas', 0)}"
    return [name(obj), ready, age(obj, now), names, images]


STATEFUL_SET = Printer((
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE, CONTAINERS, IMAGES,
), _sts_row)


def _deploy_row(obj: Obj, now: datetime) -> list[Any]:
    st = status(obj)
    names, images = layout_containers(template_containers(obj))
    selector = spec(obj).get("selector")
    selector_text = format_label_selector(selector)
    if selector_text == "<error>":
        selector_text = "<invalid>"
    elif selector_text == "<none>":
        selector_text = ""  # Deployment prints the raw selector string
    return [name(obj), f"{st.get('readyReplicas', 0)}/{spec(obj).get('replicas', 0)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(obj, now),
            names, images, selector_text]


DEPLOYMENT = Printer((
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "@apps.v1.DeploymentStatus.updatedReplicas"),
    col("Available", "string", "@apps.v1.DeploymentStatus.availableReplicas"),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@apps.v1.DeploymentSpec.selector", 1),
), _deploy_row)


def _job_status(obj: Obj) -> str:
    conditions = status(obj).get("conditions") or []

    def has(ctype: str) -> bool:
        for c in conditions:
            if c.get("type") == ctype:
                return c.get("status") == "True"
        return False

    if has("Complete"):
        return "Complete"
    if has("Failed"):
        return "Failed"
    if deleting(obj):
        return "Terminating"
    if has("Suspended"):
        return "Suspended"
    if has("FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_row(obj: Obj, now: datetime) -> list[Any]:
    sp, st = spec(obj), status(obj)
    succeeded = st.get("succeeded", 0)
    if sp.get("completions") is not None:
        completions = f"{succeeded}/{sp['completions']}"
    elif (sp.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {sp['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_rfc3339(st.get("startTime")), parse_rfc3339(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((end or now) - start)
    names, images = layout_containers(template_containers(obj))
    return [name(obj), _job_status(obj), completions, duration, age(obj, now), names, images,
            format_label_selector(sp.get("selector"))]


JOB = Printer((
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "@batch.v1.JobStatus.succeeded"),
    col("Duration", "string", "Time required to complete the job."),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@batch.v1.JobSpec.selector", 1),
), _job_row)


def _cronjob_row(obj: Obj, now: datetime) -> list[Any]:
    sp, st = spec(obj), status(obj)
    last = st.get("lastScheduleTime")
    job_spec = (sp.get("jobTemplate") or {}).get("spec") or {}
    names, images = layout_containers(((job_spec.get("template") or {}).get("spec") or {}).get("containers"))
    return [name(obj), sp.get("schedule", ""), sp.get("timeZone") or "<none>", bool_ptr(sp.get("suspend")),
            len(st.get("active") or []), translate_timestamp_since(last, now) if last else "<none>",
            age(obj, now), names, images, format_label_selector(job_spec.get("selector"))]


CRON_JOB = Printer((
    NAME,
    col("Schedule", "string", "@batch.v1.CronJobSpec.schedule"),
    col("Timezone", "string", "@batch.v1.CronJobSpec.timeZone"),
    col("Suspend", "boolean", "@batch.v1.CronJobSpec.suspend"),
    col("Active", "integer", "@batch.v1.CronJobStatus.active"),
    col("Last Schedule", "string", "@batch.v1.CronJobStatus.lastScheduleTime"),
    AGE, CONTAINERS, IMAGES,
    col("Selector", "string", "@batch.v1.JobSpec.selector", 1),
), _cronjob_row)


def controller_of(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def _controller_revision_row(obj: Obj, now: datetime) -> list[Any]:
    ref = controller_of(obj)
    controller = "<none>"
    if ref is not None:
        api_version = ref.get("apiVersion", "")
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        kind = ref.get("kind", "")
        group_kind = f"{kind}.{group}" if group else kind
        controller = f"{group_kind.lower()}/{ref.get('name', '')}" if group_kind else ref.get("name", "")
    return [name(obj), controller, obj.get("revision", 0), age(obj, now)]


CONTROLLER_REVISION = Printer((
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", "@apps.v1.ControllerRevision.revision"),
    AGE,
), _controller_revision_row)


def _pdb_row(obj: Obj, now: datetime) -> list[Any]:
    sp = spec(obj)
    min_available = str(sp["minAvailable"]) if sp.get("minAvailable") is not None else "N/A"
    max_unavailable = str(sp["maxUnavailable"]) if sp.get("maxUnavailable") is not None else "N/A"
    return [name(obj), min_available, max_unavailable, status(obj).get("disruptionsAllowed", 0), age(obj, now)]


POD_DISRUPTION_BUDGET = Printer((
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
    col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
    AGE,
), _pdb_row)


def _hpa_metrics(obj: Obj) -> str:
    sp, st = spec(obj), status(obj)
    if "targetCPUUtilizationPercentage" in sp:  # autoscaling/v1 shape
        current = st.get("currentCPUUtilizationPercentage")
        target = sp.get("targetCPUUtilizationPercentage")
        cur = f"{current}%" if current is not None else "<unknown>"
        tgt = f"{target}%" if target is not None else "<auto>"
        return f"cpu: {cur}/{tgt}"
    specs = sp.get("metrics") or []
    if not specs:
        return "<none>"
    statuses = st.get("currentMetrics") or []
    out: list[str] = []
    for i, m in enumerate(specs):
        mtype = m.get("type")
        cur_status = statuses[i] if i < len(statuses) else {}
        if mtype in ("Resource", "ContainerResource"):
            key = "resource" if mtype == "Resource" else "containerResource"
            source = m.get(key) or {}
            target = source.get("target") or {}
            current = (cur_status.get(key) or {}).get("current") or {}
            if target.get("averageValue") is not None:
                out.append(f"{source.get('name', '')}: {current.get('averageValue', '<unknown>')}/"
                           f"{target['averageValue']}")
            else:
                cur = f"{current['averageUtilization']}%" if current.get("averageUtilization") is not None \
                    else "<unknown>"
                tgt = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None \
                    else "<auto>"
                out.append(f"{source.get('name', '')}: {cur}/{tgt}")
        elif mtype in ("Pods", "Object", "External"):
            key = {"Pods": "pods", "Object": "object", "External": "external"}[mtype]
            target = (m.get(key) or {}).get("target") or {}
            current = (cur_status.get(key) or {}).get("current") or {}
            if mtype == "Pods" or target.get("averageValue") is not None:
                suffix = "" if mtype == "Pods" else " (avg)"
                out.append(f"{current.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}{suffix}")
            else:
                out.append(f"{current.get('value', '<unknown>')}/{target.get('value', '')}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return ", ".join(out[:2]) + f" + {len(out) - 2} more..."
    return ", ".join(out)


def _hpa_row(obj: Obj, now: datetime) -> list[Any]:
    sp = spec(obj)
    ref = sp.get("scaleTargetRef") or {}
    min_pods = str(sp["minReplicas"]) if sp.get("minReplicas") is not None else "<unset>"
    return [name(obj), f"{ref.get('kind', '')}/{ref.get('name', '')}", _hpa_metrics(obj), min_pods,
            sp.get("maxReplicas", 0), status(obj).get("currentReplicas", 0), age(obj, now)]


HORIZONTAL_POD_AUTOSCALER = Printer((
    NAME,
    col("Reference", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.scaleTargetRef"),
    col("Targets", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.metrics"),
    col("MinPods", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.minReplicas"),
    col("MaxPods", "string", "@autoscaling.v2.HorizontalPodAutoscalerSpec.maxReplicas"),
    col("Replicas", "string", "@autoscaling.v2.HorizontalPodAutoscalerStatus.currentReplicas"),
    AGE,
), _hpa_row)
