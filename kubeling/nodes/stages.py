"""Declared stages of simulated nodes and pods: what a kubelet would write, as pure functions of time.

KWOK's idea in Python: behaviour is data. A :class:`Stage` names a step, says which objects it
applies to (``match``), when it is due (``due``: an absolute time derived from the object itself,
so a restarted fleet resumes where it left off) and what it does (``effect``: a status patch or a
delete). ``plan(stages, obj, ctx)`` picks the first matching stage and answers either the effect
to apply now or how long to wait. Everything here takes the clock as ``ctx.now`` and does no I/O,
so tests render stages with a fixed clock (see tests/test_nodes_unit.py).

Crash loops and image pull back-off are computed from timestamps in the status (startTime,
lastState.terminated.finishedAt, restartCount) rather than kept in memory, with the kubelet's
back-off (10 s doubling to 300 s).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubeling.nodes.faults import (
    image_matches,
    node_crash_globs,
    node_fail_globs,
    node_simulations,
    parse_duration,
)

# Annotations (our extensions live under kubeling.io/).
NODE_AGENT = "kubeling.io/node-agent"
CAPACITY_PREFIX = "kubeling.io/capacity-"
READY_AFTER = "kubeling.io/ready-after"
PULL_DELAY = "kubeling.io/pull-delay"
STOP_AFTER = "kubeling.io/stop-after"

KUBELET_VERSION = "v1.32.0"
CONTAINER_RUNTIME_VERSION = "containerd://1.7.24"
OS_IMAGE = "Debian GNU/Linux 12 (bookworm)"
KERNEL_VERSION = "6.8.0-kubeling"
KUBELET_PORT = 10250

DEFAULT_CAPACITY = {"cpu": "4", "ephemeral-storage": "100Gi", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                    "memory": "16Gi", "pods": "110"}

BACKOFF_INITIAL = 10.0   # kubelet's crash loop and image pull back-off
BACKOFF_MAX = 300.0
ERR_IMAGE_PULL_SHOWN = 1.0  # seconds ErrImagePull shows before ImagePullBackOff

Obj = dict[str, Any]


# -- time ------------------------------------------------------------------------------------------

_SECONDS: dict[int, str] = {}  # formatted seconds: a pod's status holds the same few many times over


def _fmt_second(sec: int) -> str:
    text = _SECONDS.get(sec)
    if text is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        text = _SECONDS[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return text


def fmt_time(t: float) -> str:
    return _fmt_second(int(t)) + "Z"


def fmt_micro_time(t: float) -> str:
    """metav1.MicroTime text (every Lease renewal writes one)."""
    frac, whole = math.modf(t)  # rounded as datetime.fromtimestamp rounds
    sec, micros = int(whole), round(frac * 1_000_000)
    if micros >= 1_000_000:
        sec, micros = sec + 1, micros - 1_000_000
    return f"{_fmt_second(sec)}.{micros:06d}Z"


_PARSED: dict[str, float | None] = {}  # parsed times: startTime and heartbeats are read on every sync


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return _PARSED[s]
    except (KeyError, TypeError):
        pass
    try:
        t: float | None = datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        t = None
    if type(s) is str:
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[s] = t
    return t


def backoff(n: int) -> float:
    """The kubelet's n-th back-off (n from 0): 10 s, 20 s, 40 s ... capped at 300 s."""
    return min(BACKOFF_INITIAL * (2 ** min(n, 16)), BACKOFF_MAX)


# -- stages as data -------------------------------------------------------------------------------

@dataclass(slots=True)
class Ctx:
    """What a stage may look at besides the object: the clock, the node, fleet settings."""

    now: float
    node: Obj | None = None
    stop_after: float = 1.0
    pull_delay: float = 0.0
    start_delay: float = 0.0
    fail_images: tuple[str, ...] = ()
    crash_images: tuple[str, ...] = ()
    pod_ip: str | None = None
    status_report_frequency: float = 300.0
    # A fast kubelet: with no pull or start delay, the first post is already the running status
    # (one write per pod start instead of two); with a delay ContainerCreating still shows.
    fast_start: bool = False
    # The kubelet's delayAfterNodeStatusChange: the first unchanged report after a change comes a
    # per-node delay in [-1/2, 1/2) of the report frequency early or late (see _heartbeat_due).
    report_jitter: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Effect:
    """What to do: patch the status (strategic merge), delete the object (grace 0), or nothing."""

    status: Obj | None = None
    delete: bool = False


@dataclass(frozen=True)
class Stage:
    name: str
    match: Callable[[Obj, Ctx], bool]
    due: Callable[[Obj, Ctx], float]          # absolute time; 0 means now
    effect: Callable[[Obj, Ctx], Effect]
    # When the effect leaves the object unchanged, look again at this time (None: on the next event).
    recheck: Callable[[Obj, Ctx], float | None] = lambda obj, ctx: None


@dataclass(frozen=True)
class Plan:
    stage: str | None
    effect: Effect | None       # None: nothing to do now
    wait: float | None          # seconds until the object should be looked at again


def plan(stages: list[Stage], obj: Obj, ctx: Ctx) -> Plan:
    """The first matching stage: its effect if due, else how long until it is."""
    for st in stages:
        if not st.match(obj, ctx):
            continue
        due = st.due(obj, ctx)
        if due > ctx.now:
            return Plan(st.name, None, due - ctx.now)
        eff = st.effect(obj, ctx)
        again = st.recheck(obj, ctx)
        return Plan(st.name, eff, None if again is None else max(again - ctx.now, 0.0))
    return Plan(None, None, None)


# -- nodes --------------------------------------------------------------------------------------

def is_adopted(node: Obj) -> bool:
    return ((node.get("metadata") or {}).get("annotations") or {}).get(NODE_AGENT) != "external"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def pod_cidr_for_index(i: int) -> str:
    """10.244.<i>.0/24 for the first 256 nodes, then on into 10.245.x, ... (a /12-sized range)."""
    return f"10.{244 + (i >> 8) % 12}.{i & 255}.0/24" if i < 256 * 12 else f"10.{128 + (i >> 8) - 12}.{i & 255}.0/24"


_POD_CIDR = re.compile(r"10\.(\d+)\.(\d+)\.0/24")


@functools.lru_cache(maxsize=16384)  # one per node: every node and pod sync asks
def index_of_pod_cidr(cidr: str | None) -> int | None:
    m = _POD_CIDR.fullmatch(cidr or "")
    if not m:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if 244 <= a <= 255:
        return (a - 244) * 256 + b
    if 128 <= a < 244:
        return (a - 128 + 12) * 256 + b
    return None


@functools.lru_cache(maxsize=16384)
def pod_ip_prefix(cidr: str | None) -> str | None:
    """The first three octets of the pod IPs in a node's podCIDR ("10.244.3"), None if not ours."""
    idx = index_of_pod_cidr(cidr)
    return None if idx is None else pod_cidr_for_index(idx).rsplit(".", 1)[0]


def node_ip(node: Obj) -> str:
    """A deterministic 10.0.x.y InternalIP: from the pod CIDR's index, else from the name."""
    return _node_ip((node.get("spec") or {}).get("podCIDR"), node["metadata"]["name"])


@functools.lru_cache(maxsize=16384)  # keyed by what it is made of: a new podCIDR is a new entry
def _node_ip(cidr: str | None, name: str) -> str:
    idx = index_of_pod_cidr(cidr)
    if idx is None:
        idx = int(_digest(name)[:8], 16) % 60000
    host = idx + 2
    return f"10.0.{host >> 8}.{host & 255}"


_OS_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}


def node_metadata_patch(node: Obj, *, cidr_index: int | None) -> Obj | None:
    """Labels a kubelet registers, and a podCIDR (node-ipam's job upstream), where missing."""
    meta = node.get("metadata") or {}
    name = meta["name"]
    labels = meta.get("labels") or {}
    patch: Obj = {}
    if "kubernetes.io/hostname" not in labels or any(k not in labels for k in _OS_LABELS):
        want = {"kubernetes.io/hostname": name, **_OS_LABELS}
        patch["metadata"] = {"labels": {k: v for k, v in want.items() if k not in labels}}
    if not (node.get("spec") or {}).get("podCIDR") and cidr_index is not None:
        cidr = pod_cidr_for_index(cidr_index)
        patch["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    return patch or None


def node_capacity(node: Obj) -> Obj:
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    cap = dict(DEFAULT_CAPACITY)
    for key, value in annotations.items():
        if key.startswith(CAPACITY_PREFIX) and value:
            cap[key[len(CAPACITY_PREFIX):]] = str(value)
    return cap


def node_info(name: str) -> Obj:
    return dict(_node_info(name))  # a copy: callers put it in bodies they own


@functools.lru_cache(maxsize=16384)
def _node_info(name: str) -> Obj:
    # every node sync compares the status it would post (nodeInfo included): hashes once per node
    d = _digest("node", name)
    return {
        "architecture": "amd64",
        "bootID": str(uuid.UUID(d[32:64])),
        "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
        "kernelVersion": KERNEL_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "kubeletVersion": KUBELET_VERSION,
        "machineID": d[:32],
        "operatingSystem": "linux",
        "osImage": OS_IMAGE,
        "systemUUID": str(uuid.UUID(d[:32])),
    }


# (type, status-when-true-of-simulation, reason/message when good, reason/message when bad)
_NODE_CONDITIONS = [
    ("MemoryPressure", "memory-pressure",
     ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
     ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    ("DiskPressure", "disk-pressure",
     ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    ("PIDPressure", "pid-pressure",
     ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
     ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
]
NOT_READY_MESSAGE = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                     "message:Network plugin returns error: cni plugin not initialized")


@functools.lru_cache(maxsize=64)
def _wanted_conditions(sims: frozenset[str]) -> tuple[tuple[str, str, str, str], ...]:
    """(type, status, reason, message) of the four kubelet-owned conditions under these simulations."""
    out = [(ctype, "True", *bad) if sim in sims else (ctype, "False", *good)
           for ctype, sim, good, bad in _NODE_CONDITIONS]
    if "not-ready" in sims:
        out.append(("Ready", "False", "KubeletNotReady", NOT_READY_MESSAGE))
    else:
        out.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    return tuple(out)


def _conditions_by_type(obj: Obj) -> dict[Any, Obj]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def node_conditions(node: Obj, ctx: Ctx) -> list[Obj]:
    """The four conditions the kubelet owns, keeping lastTransitionTime while the status holds."""
    current = _conditions_by_type(node)
    now = fmt_time(ctx.now)
    out = []
    for ctype, status, reason, message in _wanted_conditions(node_simulations(node)):
        old = current.get(ctype) or {}
        transition = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append({"type": ctype, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": transition or now, "reason": reason, "message": message})
    return out


_DAEMON_ENDPOINTS = {"kubeletEndpoint": {"Port": KUBELET_PORT}}


def _node_addresses(node: Obj, name: str) -> list[Obj]:
    return [{"type": "InternalIP", "address": node_ip(node)}, {"type": "Hostname", "address": name}]


def node_status(node: Obj, ctx: Ctx) -> Obj:
    """The status a kubelet posts: the part of Node.status it owns."""
    name = node["metadata"]["name"]
    cap = node_capacity(node)
    return {
        "capacity": cap,
        "allocatable": dict(cap),
        "addresses": _node_addresses(node, name),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": node_info(name),
        "conditions": node_conditions(node, ctx),
    }


def _node_status_stale(node: Obj, ctx: Ctx) -> bool:
    """Something owned differs (heartbeat times aside): the kubelet posts at once.

    Compares with what node_status would post, piece by piece, without building it (every node
    sync asks, and the answer is nearly always no).
    """
    have = node.get("status") or {}
    name = node["metadata"]["name"]
    cap = node_capacity(node)
    if (have.get("capacity") != cap or have.get("allocatable") != cap
            or have.get("daemonEndpoints") != _DAEMON_ENDPOINTS or have.get("nodeInfo") != _node_info(name)
            or have.get("addresses") != _node_addresses(node, name)):
        return True
    current = _conditions_by_type(node)
    now = fmt_time(ctx.now)
    for ctype, status, reason, message in _wanted_conditions(node_simulations(node)):
        old = current.get(ctype)
        if old is None:
            return True
        was = old.get("lastTransitionTime")
        # the post keeps the transition time while the status holds, else it is now
        if (old.get("status"), old.get("reason"), old.get("message"), was) != \
                (status, reason, message, (was if old.get("status") == status else None) or now):
            return True
    return False


def _last_heartbeat(node: Obj) -> float:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return parse_time(c.get("lastHeartbeatTime")) or 0.0
    return 0.0


def report_delay(name: str, frequency: float) -> float:
    """This node's delayAfterNodeStatusChange: in [-frequency/2, frequency/2), fixed per node name.

    Upstream draws it at random after each change; a value derived from the name keeps a restarted
    fleet on the same schedule and spreads nodes registered together over a whole period.
    """
    return (zlib.crc32(name.encode()) / 2**32 - 0.5) * frequency


def _reported_change(node: Obj) -> bool:
    """Whether the last report carried a change: a condition moved at the Ready heartbeat's time
    (registration included). Heartbeat-only reports leave every transition time behind it."""
    conds = (node.get("status") or {}).get("conditions") or []
    beat = next((c.get("lastHeartbeatTime") for c in conds if c.get("type") == "Ready"), None)
    return beat is not None and any(c.get("lastTransitionTime") == beat for c in conds)


def _heartbeat_due(node: Obj, ctx: Ctx) -> float:
    """nodeStatusReportFrequency after the last report, shifted once after a change (upstream's jitter)."""
    due = _last_heartbeat(node) + ctx.status_report_frequency
    if ctx.report_jitter and _reported_change(node):
        due += report_delay(node["metadata"]["name"], ctx.status_report_frequency)
    return due


NODE_STAGES: list[Stage] = [
    # heartbeats stop: neither status nor lease is written (the lease part lives in the fleet)
    Stage("node-unreachable",
          match=lambda n, c: "unreachable" in node_simulations(n),
          due=lambda n, c: 0.0, effect=lambda n, c: Effect()),
    Stage("node-status-changed",
          match=_node_status_stale,
          due=lambda n, c: 0.0,
          effect=lambda n, c: Effect(status=node_status(n, c)),
          recheck=lambda n, c: c.now + c.status_report_frequency),
    # nodeStatusReportFrequency: an unchanged status is still posted every 5 minutes
    Stage("node-heartbeat",
          match=lambda n, c: True,
          due=_heartbeat_due,
          effect=lambda n, c: Effect(status={"conditions": node_conditions(n, c)}),
          recheck=lambda n, c: c.now + c.status_report_frequency),
]


def lease_body(node: Obj, *, now: float, duration: int) -> Obj:
    meta = node["metadata"]
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": meta["name"], "namespace": "kube-node-lease",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": meta["name"],
                                          "uid": meta.get("uid", "")}]},
        "spec": {"holderIdentity": meta["name"], "leaseDurationSeconds": duration,
                 "renewTime": fmt_micro_time(now)},
    }


# -- pods ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)  # a cluster runs few distinct images, each in many pods
def normalize_image(image: str) -> str:
    """containerd's fully qualified reference: nginx -> docker.io/library/nginx:latest."""
    name, digest = (image.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/library/" if "/" not in name else "docker.io/") + name
    return f"{name}@{digest}" if digest else name


@functools.lru_cache(maxsize=4096)
def image_id(image: str) -> str:
    ref = normalize_image(image)
    repo = ref.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
    return f"{repo}@sha256:{_digest('image', ref)}"


def container_id(pod: Obj, name: str, restart: int) -> str:
    return "containerd://" + _digest("container", pod["metadata"].get("uid", ""), name, str(restart))


def _annotation(obj: Obj | None, key: str) -> str | None:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(key)


def pull_delay(pod: Obj, ctx: Ctx) -> float:
    node_delay = parse_duration(_annotation(ctx.node, PULL_DELAY))
    return (ctx.pull_delay if node_delay is None else node_delay) + ctx.start_delay


def stop_after(pod: Obj, ctx: Ctx) -> float:
    own = parse_duration(_annotation(pod, STOP_AFTER))
    delay = ctx.stop_after if own is None else own
    grace = pod["metadata"].get("deletionGracePeriodSeconds")
    return min(delay, float(grace)) if grace is not None else delay


def _deletion_due(pod: Obj, ctx: Ctx) -> float:
    meta = pod["metadata"]
    deadline = parse_time(meta.get("deletionTimestamp")) or ctx.now
    grace = meta.get("deletionGracePeriodSeconds") or 0
    return deadline - grace + stop_after(pod, ctx)   # deletionTimestamp = request time + grace


@dataclass(slots=True)
class ContainerRun:
    """One container's status at ctx.now and the next time it will change (None: never)."""

    status: Obj
    next_change: float | None
    done: bool = False      # an init container that completed
    failed: bool = False    # terminated with a non-zero exit and not restarted


def _fails_pull(image: str, ctx: Ctx) -> bool:
    return image_matches(image, node_fail_globs(ctx.node, ctx.fail_images), default_tag_prefix="broken")


def _crashes(image: str, ctx: Ctx) -> bool:
    return image_matches(image, node_crash_globs(ctx.node, ctx.crash_images), default_tag_prefix="crash")


def _pull_failure(c: Obj, pod: Obj, start: float, ctx: Ctx) -> ContainerRun:
    """ErrImagePull at each attempt, ImagePullBackOff between: attempts at start, +10, +20, +40 ..."""
    attempt, n = start, 0
    while attempt + backoff(n) <= ctx.now:
        attempt += backoff(n)
        n += 1
    ref = normalize_image(c["image"])
    if ctx.now < attempt + ERR_IMAGE_PULL_SHOWN:
        waiting = {"reason": "ErrImagePull",
                   "message": f'failed to pull and unpack image "{ref}": failed to resolve reference '
                              f'"{ref}": {ref}: not found'}
        nxt = attempt + ERR_IMAGE_PULL_SHOWN
    else:
        waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c["image"]}"'}
        nxt = attempt + backoff(n)
    return ContainerRun(_cstatus(c, ref, state={"waiting": waiting}), nxt)


def _cstatus(c: Obj, ref: str, *, state: Obj, last: Obj | None = None, restarts: int = 0,
             started: bool = False, ready: bool = False, cid: str | None = None) -> Obj:
    st: Obj = {"name": c["name"], "image": ref, "imageID": image_id(c["image"]) if cid else "",
               "state": state, "lastState": last or {}, "ready": ready, "restartCount": restarts,
               "started": started}
    if cid:
        st["containerID"] = cid
    return st


def _crash_loop(c: Obj, pod: Obj, start: float, ctx: Ctx) -> ContainerRun:
    """Start, exit 1, restart after 1 s, then back off 10 s, 20 s ... (restartCount grows)."""
    ref = normalize_image(c["image"])
    policy = c.get("restartPolicy") or pod["spec"].get("restartPolicy", "Always")
    terminated = {"exitCode": 1, "reason": "Error", "startedAt": fmt_time(start), "finishedAt": fmt_time(start),
                  "containerID": container_id(pod, c["name"], 0)}
    if policy == "Never":
        return ContainerRun(_cstatus(c, ref, state={"terminated": terminated}, cid=terminated["containerID"]),
                            None, failed=True)
    restart_at, restarts = start + 1.0, 0
    if ctx.now < restart_at:
        return ContainerRun(_cstatus(c, ref, state={"terminated": terminated}, cid=terminated["containerID"]),
                            restart_at)
    while True:
        restarts += 1
        nxt = restart_at + backoff(restarts - 1)
        if nxt > ctx.now:
            break
        restart_at = nxt
    cid = container_id(pod, c["name"], restarts)
    last = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": fmt_time(restart_at),
                           "finishedAt": fmt_time(restart_at), "containerID": cid}}
    namespace, name, uid = pod["metadata"].get("namespace", ""), pod["metadata"]["name"], pod["metadata"].get("uid", "")
    waiting = {"reason": "CrashLoopBackOff",
               "message": f"back-off {int(nxt - restart_at)}s restarting failed container={c['name']} "
                          f"pod={name}_{namespace}({uid})"}
    return ContainerRun(_cstatus(c, ref, state={"waiting": waiting}, last=last, restarts=restarts, cid=cid), nxt)


def _run_container(c: Obj, pod: Obj, start: float, ctx: Ctx, *, init: bool) -> ContainerRun:
    """A container created at ``start`` (after its image pull): per-container stages in order."""
    ref = normalize_image(c["image"])
    if ctx.now < start:
        return ContainerRun(_cstatus(c, ref, state={"waiting": {"reason": "ContainerCreating"}}), start)
    if _fails_pull(c["image"], ctx):
        return _pull_failure(c, pod, start, ctx)
    if _crashes(c["image"], ctx):
        return _crash_loop(c, pod, start, ctx)
    cid = container_id(pod, c["name"], 0)
    sidecar = init and c.get("restartPolicy") == "Always"
    if init and not sidecar:
        term = {"exitCode": 0, "reason": "Completed", "startedAt": fmt_time(start), "finishedAt": fmt_time(start),
                "containerID": cid}
        return ContainerRun(_cstatus(c, ref, state={"terminated": term}, cid=cid, ready=True), None, done=True)
    ready_after = parse_duration(_annotation(pod, READY_AFTER)) or 0.0
    ready = ctx.now >= start + ready_after
    st = _cstatus(c, ref, state={"running": {"startedAt": fmt_time(start)}}, started=True, ready=ready, cid=cid)
    return ContainerRun(st, None if ready else start + ready_after, done=sidecar)


def _cond(current: dict[Any, Obj], ctx: Ctx, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    old = current.get(ctype) or {}
    status = "True" if ok else "False"
    transition = old.get("lastTransitionTime") if old.get("status") == status else None
    cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": transition or fmt_time(ctx.now)}
    if not ok and reason:
        cond["reason"] = reason
        cond["message"] = message
    elif old.get("reason") or old.get("message"):
        # a strategic merge keeps fields the patch leaves out: null clears the stale explanation
        cond["reason"] = None
        cond["message"] = None
    return cond


def _readiness_gates(pod: Obj) -> str | None:
    """Upstream's message for the first readiness gate not True, if any."""
    gates = pod["spec"].get("readinessGates")
    if not gates:
        return None
    conds = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    for gate in gates:
        t = gate.get("conditionType")
        if t not in conds:
            return f'corresponding condition of pod readiness gate "{t}" does not exist.'
        if conds[t] != "True":
            return f'the status of pod readiness gate "{t}" is not "True", but {conds[t]}'
    return None


def pod_status(pod: Obj, ctx: Ctx, *, first: bool = False) -> tuple[Obj, float | None]:
    """The full kubelet-owned status at ctx.now, and when it next changes by itself.

    ``first`` renders the kubelet's first post: sandbox not yet ready, every container creating.
    """
    spec = pod["spec"]
    status = pod.get("status") or {}
    start = parse_time(status.get("startTime")) or ctx.now
    created = start + pull_delay(pod, ctx)
    if first:
        created = max(created, ctx.now + 0.001)
    host_ip = node_ip(ctx.node) if ctx.node else status.get("hostIP", "")
    pod_ip = host_ip if spec.get("hostNetwork") else (status.get("podIP") or ctx.pod_ip)
    changes: list[float] = []

    init_runs: list[ContainerRun] = []
    blocked = False
    for c in spec.get("initContainers") or []:
        if blocked:
            init_runs.append(ContainerRun(_cstatus(c, normalize_image(c["image"]),
                                                   state={"waiting": {"reason": "PodInitializing"}}), None))
            continue
        run = _run_container(c, pod, created, ctx, init=True)
        init_runs.append(run)
        if run.next_change is not None:
            changes.append(run.next_change)
        blocked = not run.done
    initialized = not blocked
    if initialized:
        runs = [_run_container(c, pod, created, ctx, init=False) for c in spec.get("containers") or []]
    else:
        reason = "PodInitializing" if ctx.now >= created else "ContainerCreating"
        runs = [ContainerRun(_cstatus(c, normalize_image(c["image"]), state={"waiting": {"reason": reason}}),
                             None) for c in spec.get("containers") or []]
    changes += [r.next_change for r in runs if r.next_change is not None]

    # kubelet's getPhase: a container waiting that never ran keeps the pod Pending
    statuses = [r.status for r in runs]
    waiting = running = failed = False
    for r in runs:
        state = r.status["state"]
        waiting = waiting or ("waiting" in state and not r.status["lastState"])
        running = running or "running" in state
        failed = failed or r.failed
    policy = spec.get("restartPolicy", "Always")
    if not initialized or waiting:
        phase = "Pending"
    elif running or policy != "Never" or not failed:
        phase = "Running"
    else:
        phase = "Failed"
    terminal = phase == "Failed"

    unready = [s["name"] for s in statuses if not s["ready"]]
    incomplete = [r.status["name"] for r in init_runs if not r.done]
    sandbox = not first and not terminal
    gate = _readiness_gates(pod)
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready_msg = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
    # the first condition of each type, as a strategic merge keyed by type finds it
    current: dict[Any, Obj] = {}
    for c in status.get("conditions") or []:
        current.setdefault(c.get("type"), c)
    conditions = [
        _cond(current, ctx, "PodReadyToStartContainers", sandbox),
        _cond(current, ctx, "Initialized", initialized, "ContainersNotInitialized",
              f"containers with incomplete status: [{' '.join(incomplete)}]"),
        _cond(current, ctx, "Ready", not unready and not gate and not terminal,
              "ReadinessGatesNotReady" if not unready and gate else ready_reason, gate if not unready and gate else ready_msg),
        _cond(current, ctx, "ContainersReady", not unready and not terminal, ready_reason, ready_msg),
    ]
    conditions.append(_cond(current, ctx, "PodScheduled", True))  # pods created with nodeName lack it

    out: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": fmt_time(start),
        "containerStatuses": statuses,
    }
    if pod_ip and (sandbox or status.get("podIP")):
        out["podIP"] = pod_ip
        out["podIPs"] = [{"ip": pod_ip}]
    if init_runs:
        out["initContainerStatuses"] = [r.status for r in init_runs]
    return out, (min(changes) if changes else None)


_NO_CONDITION: Obj = {}


def _owned_differs(pod: Obj, want: Obj) -> bool:
    have = pod.get("status") or {}
    for key, value in want.items():
        if key == "conditions":
            current = {c.get("type"): c for c in have.get("conditions") or []}
            for c in value:
                old = current.get(c["type"], _NO_CONDITION)
                if old.get("status") != c.get("status") or old.get("reason") != c.get("reason") \
                        or old.get("message") != c.get("message"):
                    return True
        elif have.get(key) != value:
            return True
    return False


def _starts_at_once(pod: Obj, ctx: Ctx) -> bool:
    return ctx.fast_start and pull_delay(pod, ctx) <= 0


def _pod_create_effect(pod: Obj, ctx: Ctx) -> Effect:
    first = not _starts_at_once(pod, ctx)
    want, next_change = pod_status(pod, ctx, first=first)
    ctx.extra[COMPUTED] = (want, next_change, first)
    return Effect(status=want)


def _pod_sync_effect(pod: Obj, ctx: Ctx) -> Effect:
    want, next_change = pod_status(pod, ctx)
    ctx.extra[_NEXT_CHANGE] = next_change  # for the recheck plan() asks next: one status computed, not two
    ctx.extra[COMPUTED] = (want, next_change, False)
    return Effect(status=want) if _owned_differs(pod, want) else Effect()


_NEXT_CHANGE = "pod-next-change"
# ctx.extra after plan(): (status, next change, first post) of the pod status a stage computed
COMPUTED = "pod-status-computed"


def _pod_recheck(pod: Obj, ctx: Ctx) -> float | None:
    if _NEXT_CHANGE in ctx.extra:
        return ctx.extra.pop(_NEXT_CHANGE)
    return pod_status(pod, ctx)[1]


POD_STAGES: list[Stage] = [
    # the container got SIGTERM and exits about stop_after later; then the kubelet deletes with grace 0
    Stage("pod-delete",
          match=lambda p, c: bool(p["metadata"].get("deletionTimestamp")),
          due=_deletion_due,
          effect=lambda p, c: Effect(delete=True)),
    # a terminal pod is never touched again
    Stage("pod-terminal",
          match=lambda p, c: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
          due=lambda p, c: 0.0, effect=lambda p, c: Effect()),
    # first sight: Pending, ContainerCreating, hostIP, startTime
    Stage("pod-create",
          match=lambda p, c: not (p.get("status") or {}).get("startTime"),
          due=lambda p, c: 0.0,
          effect=_pod_create_effect,
          recheck=lambda p, c: c.now),
    # everything after: pulls, init containers, crash loops, pull back-off, readiness
    Stage("pod-run",
          match=lambda p, c: True,
          due=lambda p, c: 0.0,
          effect=_pod_sync_effect,
          recheck=_pod_recheck),
]


# -- the echo of a status write ----------------------------------------------------------------------

@dataclass(slots=True)  # not frozen: one per status write, and a frozen __init__ costs more
class WrittenStatus:
    """A pod status the fleet computed and wrote, with everything it was computed from.

    When the write comes back (the watch's echo of it, or the patch's answer) the pod-run stage
    would compute the status again and find nothing to change. ``echo_plan`` reaches that verdict
    by comparing inputs instead: the same revision as written, the same spec, annotations, uid,
    node and fleet settings, a clock not past the status's next change. Anything else (a restarted
    fleet, another writer, a changed node, a due change) computes the status as usual.
    """

    rv: str | None                     # the written revision's resourceVersion
    spec: Obj
    meta: tuple[Any, Any]              # (uid, annotations)
    start_time: str | None             # status.startTime computed from; None: the first post, from the clock
    pod_ip: tuple[Any, Any]            # (status.podIP, ctx.pod_ip) computed from
    gates: str | None                  # the readiness gates' verdict computed from
    node: tuple[Any, Any, Any]         # (name, annotations, podCIDR)
    settings: tuple[Any, ...]
    status: Obj                        # what was written
    next_change: float | None
    at: float


def _node_inputs(node: Obj) -> tuple[Any, Any, Any]:
    meta = node.get("metadata") or {}
    return meta.get("name"), meta.get("annotations"), (node.get("spec") or {}).get("podCIDR")


def _settings(ctx: Ctx) -> tuple[Any, ...]:
    return ctx.pull_delay, ctx.start_delay, ctx.fail_images, ctx.crash_images, ctx.fast_start


def written_status(pod: Obj, ctx: Ctx, answer: Obj) -> WrittenStatus | None:
    """What ``echo_plan`` needs to recognise the echo of the status ``plan(POD_STAGES, pod, ctx)``
    computed and the fleet wrote (``answer``: the API server's answer); None where the next
    computation may differ (so it must run).

    A first post computed its start from the clock, and the written startTime keeps whole seconds:
    it is only reused when nothing in it depends on the start (no next change, no pull delay).
    """
    computed = ctx.extra.get(COMPUTED)
    if computed is None or ctx.node is None:
        return None
    want, next_change, first = computed
    if first or want.get("phase") in ("Succeeded", "Failed"):
        return None
    status = pod.get("status") or {}
    start_time = status.get("startTime") or None
    if start_time is None and (next_change is not None or pull_delay(pod, ctx) != 0):
        return None
    meta = pod.get("metadata") or {}
    return WrittenStatus(
        rv=(answer.get("metadata") or {}).get("resourceVersion"), spec=pod["spec"],
        meta=(meta.get("uid"), meta.get("annotations")), start_time=start_time,
        pod_ip=(status.get("podIP"), ctx.pod_ip), gates=_readiness_gates(pod), node=_node_inputs(ctx.node),
        settings=_settings(ctx), status=want, next_change=next_change, at=ctx.now)


def echo_plan(w: WrittenStatus, pod: Obj, ctx: Ctx) -> Plan | None:
    """``plan(POD_STAGES, pod, ctx)`` without computing the status, when ``pod`` is the written
    revision and nothing the status is made of changed since; None when it must be computed."""
    meta = pod.get("metadata") or {}
    if meta.get("resourceVersion") != w.rv or meta.get("deletionTimestamp") or ctx.node is None:
        return None
    if ctx.now < w.at or (w.next_change is not None and ctx.now >= w.next_change):
        return None
    spec = pod.get("spec")
    status = pod.get("status") or {}
    if (spec is not w.spec and spec != w.spec) or (meta.get("uid"), meta.get("annotations")) != w.meta \
            or _node_inputs(ctx.node) != w.node or _settings(ctx) != w.settings:
        return None
    if w.start_time is not None and status.get("startTime") != w.start_time:
        return None
    if "podIP" not in w.status and (status.get("podIP"), ctx.pod_ip) != w.pod_ip:
        return None
    if _readiness_gates(pod) != w.gates or _owned_differs(pod, w.status):
        return None
    return Plan("pod-run", Effect(), None if w.next_change is None else max(w.next_change - ctx.now, 0.0))
