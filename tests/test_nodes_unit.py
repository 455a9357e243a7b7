"""Pure stage functions of the simulated fleet and the node lifecycle rules, under a fixed clock."""

from __future__ import annotations

import copy

import pytest

from kubeling.controllers import nodelifecycle as nl
from kubeling.nodes import faults, stages
from kubeling.nodes.stages import POD_STAGES, Ctx, plan

T0 = 1_700_000_000.0          # 2023-11-14T22:13:20Z
T0S = "2023-11-14T22:13:20Z"


def node(name: str = "node-1", *, annotations: dict | None = None, cidr: str | None = "10.244.1.0/24",
         conditions: list | None = None, taints: list | None = None, unschedulable: bool = False) -> dict:
    n: dict = {"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "uid": "node-uid", "annotations": annotations or {}},
               "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if conditions:
        n["status"]["conditions"] = conditions
    return n


def pod(*images: str, annotations: dict | None = None, init: tuple[str, ...] = (), policy: str = "Always",
        host_network: bool = False) -> dict:
    p: dict = {"metadata": {"name": "web", "namespace": "default", "uid": "pod-uid",
                            "annotations": annotations or {}},
               "spec": {"nodeName": "node-1", "restartPolicy": policy,
                        "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}
    if init:
        p["spec"]["initContainers"] = [{"name": f"init{i}", "image": im} for i, im in enumerate(init)]
    if host_network:
        p["spec"]["hostNetwork"] = True
    return p


def step(p: dict, ctx: Ctx) -> stages.Plan:
    """Run one stage and apply its status the way a strategic merge on conditions would."""
    pl = plan(POD_STAGES, p, ctx)
    if pl.effect is not None and pl.effect.status:
        old = {c["type"]: c for c in (p.get("status") or {}).get("conditions") or []}
        new = dict(pl.effect.status)
        for c in new.get("conditions", []):
            old[c["type"]] = c
        new["conditions"] = list(old.values())
        p["status"] = {**(p.get("status") or {}), **new}
    return pl


# -- nodes ----------------------------------------------------------------------------------------

def test_node_status_golden() -> None:
    n = node()
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0, node=n))
    assert pl.stage == "node-status-changed" and pl.wait == 300.0
    st = pl.effect.status
    assert st["capacity"] == {"cpu": "4", "ephemeral-storage": "100Gi", "hugepages-1Gi": "0",
                              "hugepages-2Mi": "0", "memory": "16Gi", "pods": "110"}
    assert st["allocatable"] == st["capacity"]
    assert st["addresses"] == [{"type": "InternalIP", "address": "10.0.0.3"},
                               {"type": "Hostname", "address": "node-1"}]
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    info = st["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.32.") and info["containerRuntimeVersion"].startswith("containerd://1.7.")
    assert info["operatingSystem"] == "linux" and info["architecture"] == "amd64"
    assert len(info["machineID"]) == 32 and len(info["systemUUID"]) == 36
    assert st["conditions"] == [
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": T0S, "lastTransitionTime": T0S,
         "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
        {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": T0S, "lastTransitionTime": T0S,
         "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
        {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": T0S, "lastTransitionTime": T0S,
         "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
        {"type": "Ready", "status": "True", "lastHeartbeatTime": T0S, "lastTransitionTime": T0S,
         "reason": "KubeletReady", "message": "kubelet is posting ready status"},
    ]


def test_node_heartbeat_cadence_and_transitions() -> None:
    n = node()
    n["status"] = plan(stages.NODE_STAGES, n, Ctx(now=T0, node=n)).effect.status
    # unchanged: nothing until nodeStatusReportFrequency
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 60, node=n))
    assert pl.stage == "node-heartbeat" and pl.effect is None and pl.wait == pytest.approx(240)
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 300, node=n))
    assert set(pl.effect.status) == {"conditions"}
    ready = pl.effect.status["conditions"][-1]
    assert ready["lastHeartbeatTime"] == "2023-11-14T22:18:20Z" and ready["lastTransitionTime"] == T0S
    # a simulated pressure is posted at once and keeps the others' transition times
    n["metadata"]["annotations"][faults.SIMULATE] = "memory-pressure,not-ready"
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 61, node=n))
    conds = {c["type"]: c for c in pl.effect.status["conditions"]}
    assert conds["MemoryPressure"]["status"] == "True"
    assert conds["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert conds["MemoryPressure"]["lastTransitionTime"] == "2023-11-14T22:14:21Z"
    assert conds["DiskPressure"]["lastTransitionTime"] == T0S
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "KubeletNotReady"
    n["metadata"]["annotations"][faults.SIMULATE] = "unreachable"
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 900, node=n))
    assert pl.stage == "node-unreachable" and not pl.effect.status


def test_node_registration_labels_cidr_capacity() -> None:
    n = node(cidr=None, annotations={"kubeling.io/capacity-cpu": "64", "kubeling.io/capacity-memory": "256Gi",
                                     "kubeling.io/capacity-pods": "250"})
    n["metadata"]["labels"] = {"kubernetes.io/hostname": "custom"}
    patch = stages.node_metadata_patch(n, cidr_index=3)
    assert patch == {"metadata": {"labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                             "beta.kubernetes.io/os": "linux",
                                             "beta.kubernetes.io/arch": "amd64"}},
                     "spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}}
    cap = stages.node_capacity(n)
    assert (cap["cpu"], cap["memory"], cap["pods"]) == ("64", "256Gi", "250")
    for i in (0, 255, 256, 3071, 3072, 20000):
        assert stages.index_of_pod_cidr(stages.pod_cidr_for_index(i)) == i
    lease = stages.lease_body(node(), now=T0 + 0.25, duration=40)
    assert lease["spec"] == {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                             "renewTime": "2023-11-14T22:13:20.250000Z"}
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"


# -- pods -----------------------------------------------------------------------------------------

def test_pod_creating_then_running() -> None:
    n = node()
    p = pod("nginx:1.25")
    ctx = Ctx(now=T0, node=n, pod_ip="10.244.1.2")
    pl = step(p, ctx)
    assert pl.stage == "pod-create"
    st = p["status"]
    assert st["phase"] == "Pending" and "podIP" not in st
    assert st["hostIP"] == "10.0.0.3" and st["hostIPs"] == [{"ip": "10.0.0.3"}] and st["startTime"] == T0S
    assert st["containerStatuses"] == [{"name": "c0", "image": "docker.io/library/nginx:1.25", "imageID": "",
                                        "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
                                        "ready": False, "restartCount": 0, "started": False}]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "False", "Initialized": "True", "Ready": "False",
                     "ContainersReady": "False", "PodScheduled": "True"}
    pl = step(p, ctx)
    assert pl.stage == "pod-run" and pl.wait is None
    st = p["status"]
    assert st["phase"] == "Running" and st["podIP"] == "10.244.1.2" and st["podIPs"] == [{"ip": "10.244.1.2"}]
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": T0S}} and cs["ready"] and cs["started"]
    assert cs["imageID"].startswith("docker.io/library/nginx@sha256:") and len(cs["imageID"]) == 31 + 64
    assert cs["containerID"].startswith("containerd://")
    assert all(c["status"] == "True" for c in st["conditions"])
    # converged: nothing more to write
    assert step(p, Ctx(now=T0 + 5, node=n, pod_ip="10.244.1.2")).effect.status is None


def test_pull_delay_ready_after_and_host_network() -> None:
    n = node(annotations={"kubeling.io/pull-delay": "2s"})
    p = pod("nginx", annotations={"kubeling.io/ready-after": "5s"}, host_network=True)
    step(p, Ctx(now=T0, node=n))
    pl = step(p, Ctx(now=T0 + 1, node=n))
    assert p["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert p["status"]["podIP"] == "10.0.0.3"  # hostNetwork pods get the node's IP
    assert pl.wait == pytest.approx(1.0)
    pl = step(p, Ctx(now=T0 + 2, node=n))
    cs = p["status"]["containerStatuses"][0]
    assert "running" in cs["state"] and not cs["ready"] and pl.wait == pytest.approx(5.0)
    assert p["status"]["phase"] == "Running"
    step(p, Ctx(now=T0 + 7, node=n))
    assert p["status"]["containerStatuses"][0]["ready"]


def test_image_pull_failure_backoff() -> None:
    n = node(annotations={faults.FAIL_IMAGES: "*/library/redis:*"})
    p = pod("nginx:broken-1", "redis:7")
    step(p, Ctx(now=T0, node=n))
    step(p, Ctx(now=T0, node=n))
    st = p["status"]
    assert st["phase"] == "Pending"
    reasons = [c["state"]["waiting"]["reason"] for c in st["containerStatuses"]]
    assert reasons == ["ErrImagePull", "ErrImagePull"]
    assert st["containerStatuses"][0]["state"]["waiting"]["message"].startswith(
        'failed to pull and unpack image "docker.io/library/nginx:broken-1"')
    pl = step(p, Ctx(now=T0 + 1, node=n))
    assert p["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "nginx:broken-1"'}
    assert pl.wait == pytest.approx(9)          # next attempt 10 s after the first
    step(p, Ctx(now=T0 + 10.5, node=n))
    assert p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    pl = step(p, Ctx(now=T0 + 12, node=n))
    assert pl.wait == pytest.approx(18)         # then 20 s later
    assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "False"


def test_crash_loop_restart_count_grows() -> None:
    n = node()
    p = pod("busybox:crash")
    step(p, Ctx(now=T0, node=n))
    step(p, Ctx(now=T0, node=n))
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    counts = []
    for t in (1, 11, 31, 71, 151, 311, 611, 911):
        step(p, Ctx(now=T0 + t, node=n))
        cs = p["status"]["containerStatuses"][0]
        counts.append(cs["restartCount"])
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert counts == [1, 2, 3, 4, 5, 6, 7, 8]
    assert p["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
        "back-off 300s restarting failed container=c0 pod=web_default(pod-uid)"
    assert p["status"]["phase"] == "Running"
    q = pod("busybox:crash", policy="Never")
    step(q, Ctx(now=T0, node=n))
    step(q, Ctx(now=T0, node=n))
    assert q["status"]["phase"] == "Failed"
    assert {c["type"]: c.get("reason") for c in q["status"]["conditions"]}["Ready"] == "PodCompleted"


def test_init_containers_complete_first() -> None:
    n = node()
    p = pod("nginx", init=("busybox",))
    step(p, Ctx(now=T0, node=n, pod_ip="10.244.1.5"))
    assert p["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    step(p, Ctx(now=T0, node=n, pod_ip="10.244.1.5"))
    init = p["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["state"]["terminated"]["exitCode"] == 0
    assert p["status"]["phase"] == "Running"
    q = pod("nginx", init=("busybox:broken",))
    step(q, Ctx(now=T0, node=n))
    step(q, Ctx(now=T0, node=n))
    assert q["status"]["phase"] == "Pending"
    assert q["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    init = {c["type"]: c for c in q["status"]["conditions"]}["Initialized"]
    assert init["status"] == "False" and init["message"] == "containers with incomplete status: [init0]"


def test_readiness_gates() -> None:
    n = node()
    p = pod("nginx")
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/feature"}]
    step(p, Ctx(now=T0, node=n))
    step(p, Ctx(now=T0, node=n))
    ready = {c["type"]: c for c in p["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert ready["message"] == 'corresponding condition of pod readiness gate "example.com/feature" does not exist.'


def test_deletion_waits_stop_after_capped_by_grace() -> None:
    n = node()
    p = pod("nginx")
    step(p, Ctx(now=T0, node=n))
    p["metadata"]["deletionTimestamp"] = "2023-11-14T22:13:50Z"   # T0 + 30 s grace
    p["metadata"]["deletionGracePeriodSeconds"] = 30
    pl = plan(POD_STAGES, p, Ctx(now=T0, node=n, stop_after=1.0))
    assert pl.stage == "pod-delete" and pl.effect is None and pl.wait == pytest.approx(1.0)
    assert plan(POD_STAGES, p, Ctx(now=T0 + 1, node=n)).effect.delete
    p["metadata"]["annotations"]["kubeling.io/stop-after"] = "10s"
    assert plan(POD_STAGES, p, Ctx(now=T0, node=n)).wait == pytest.approx(10.0)
    p["metadata"]["deletionGracePeriodSeconds"] = 2
    p["metadata"]["deletionTimestamp"] = "2023-11-14T22:13:22Z"
    assert plan(POD_STAGES, p, Ctx(now=T0, node=n)).wait == pytest.approx(2.0)


def test_faults_parsing() -> None:
    assert faults.parse_duration("1m30s") == 90 and faults.parse_duration("500ms") == 0.5
    assert faults.parse_duration("5") == 5 and faults.parse_duration("abc") is None
    assert faults.image_matches("nginx:broken", [], default_tag_prefix="broken")
    assert not faults.image_matches("broken/nginx:1", [], default_tag_prefix="broken")
    assert faults.image_matches("nginx:1.25", ["nginx:*"])
    assert faults.image_matches("nginx", ["docker.io/library/nginx:latest"])
    assert stages.normalize_image("k8s.gcr.io/fluentd-elasticsearch:1.20") == "k8s.gcr.io/fluentd-elasticsearch:1.20"
    assert stages.normalize_image("bitnami/redis") == "docker.io/bitnami/redis:latest"


# -- node lifecycle rules -------------------------------------------------------------------------

def cond(ctype: str, status: str) -> dict:
    return {"type": ctype, "status": status}


def keys(taints: list[dict]) -> list[str]:
    return sorted(f"{t['key']}:{t['effect']}" for t in taints)


def test_taints_from_conditions() -> None:
    base = [cond("Ready", "True"), cond("MemoryPressure", "False")]
    assert nl.desired_taints(node(conditions=base), now=T0) == []
    n = node(conditions=[*base, cond("NetworkUnavailable", "True")],
             taints=[{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}])
    assert keys(nl.desired_taints(n, now=T0)) == ["node-role.kubernetes.io/master:NoSchedule",
                                                   "node.kubernetes.io/network-unavailable:NoSchedule"]
    n = node(conditions=[cond("Ready", "False"), cond("DiskPressure", "True"), cond("PIDPressure", "True")],
             unschedulable=True)
    got = nl.desired_taints(n, now=T0)
    assert keys(got) == ["node.kubernetes.io/disk-pressure:NoSchedule", "node.kubernetes.io/not-ready:NoExecute",
                         "node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule",
                         "node.kubernetes.io/unschedulable:NoSchedule"]
    assert next(t for t in got if t["effect"] == "NoExecute")["timeAdded"] == T0S
    # Unknown swaps not-ready for unreachable; healing removes them and keeps others' taints
    n["status"]["conditions"] = [cond("Ready", "Unknown")]
    n["spec"]["taints"] = got
    n["spec"].pop("unschedulable")
    assert keys(nl.desired_taints(n, now=T0)) == ["node.kubernetes.io/unreachable:NoExecute",
                                                   "node.kubernetes.io/unreachable:NoSchedule"]
    n["status"]["conditions"] = [cond("Ready", "True")]
    assert nl.desired_taints(n, now=T0) == []


def test_unknown_conditions() -> None:
    n = node(conditions=[{"type": "Ready", "status": "True", "lastHeartbeatTime": T0S},
                         {"type": "NetworkUnavailable", "status": "False"}])
    ups = nl.unknown_conditions(n, now=T0 + 50)
    ready = next(c for c in ups if c["type"] == "Ready")
    assert ready == {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                     "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": T0S,
                     "lastTransitionTime": "2023-11-14T22:14:10Z"}
    assert {c["type"] for c in ups} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert next(c for c in ups if c["type"] == "MemoryPressure")["reason"] == "NodeStatusNeverUpdated"
    n2 = copy.deepcopy(n)
    n2["status"]["conditions"] = [{**c, "status": "Unknown"} for c in ups]
    assert nl.unknown_conditions(n2, now=T0 + 60) == []


def test_tolerations_and_eviction_delay() -> None:
    unreachable = {"key": nl.UNREACHABLE, "effect": "NoExecute"}
    assert nl.tolerates({"operator": "Exists"}, unreachable)
    assert nl.tolerates({"key": nl.UNREACHABLE, "operator": "Exists"}, unreachable)
    assert not nl.tolerates({"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, unreachable)
    assert nl.tolerates({"key": "k", "value": "v", "effect": "NoExecute"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not nl.tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    p = pod("nginx")
    assert nl.eviction_delay(p, [{"key": "x", "effect": "NoSchedule"}]) is None
    assert nl.eviction_delay(p, [unreachable]) == 0.0
    p["spec"]["tolerations"] = [{"key": nl.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                                 "tolerationSeconds": 300},
                                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]
    assert nl.eviction_delay(p, [unreachable]) == 30.0
    p["spec"]["tolerations"] = [{"operator": "Exists"}]
    assert nl.eviction_delay(p, [unreachable]) is None
