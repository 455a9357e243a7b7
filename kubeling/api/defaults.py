"""Upstream's v1.32 defaulters (pkg/apis/*/v1/defaults.go), applied in place on write.

Defaults run after decoding and before the strategy, so what clients read back
(and what `kubectl apply` diffs against) carries the same implicit fields as a
real cluster. Only defaulting lives here; allocation (clusterIP, nodePort),
admission (priority, serviceAccountName) and registry rules live elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_UP, Decimal
from typing import Any

from kubeling.api import kubeling_kinds, quantity

Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"


def _d(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, created when missing."""
    v = parent.get(key)
    if not isinstance(v, dict):
        v = parent[key] = {}
    return v


def _dicts(value: Any) -> list[Obj]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


# ---- core/v1 pieces ---------------------------------------------------------------------

_PULL_POLICIES: dict[str, str] = {}  # image -> its default policy: a few images repeat on every pod


def image_pull_policy(image: str) -> str:
    """Always for ':latest' or an untagged, undigested image, else IfNotPresent."""
    policy = _PULL_POLICIES.get(image)
    if policy is None:
        if len(_PULL_POLICIES) >= 4096:
            _PULL_POLICIES.clear()
        policy = _PULL_POLICIES[image] = _pull_policy(image)
    return policy


def _pull_policy(image: str) -> str:
    name = image
    if "@" in name:
        return "IfNotPresent"
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _round_up_milli(resources: Any) -> None:
    # upstream rounds resource lists up to milli precision (SetDefaults_ResourceList)
    if not isinstance(resources, dict):
        return
    for key in ("limits", "requests"):
        rl = resources.get(key)
        if not isinstance(rl, dict):
            continue
        for name, val in rl.items():
            try:
                v, fmt = quantity.parse(val)
            except quantity.QuantityError:
                continue
            r = v.quantize(Decimal("0.001"), rounding=ROUND_UP)
            if r != v:
                rl[name] = quantity.format_quantity(r, fmt)


def _probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)
    _handler(p)


def _handler(h: Obj) -> None:
    g = h.get("httpGet")
    if isinstance(g, dict):
        g.setdefault("path", "/")
        g.setdefault("scheme", "HTTP")


def _env(c: Obj) -> None:
    for e in _dicts(c.get("env")):
        vf = e.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")


# the container fields that have defaults inside them; most containers (and every running pod's
# pause-like container) have none, so one set test replaces a lookup per field
_CONTAINER_NESTED = frozenset({"ports", "env", "resources", "livenessProbe", "readinessProbe", "startupProbe",
                               "lifecycle"})


def _container(c: Obj, regular: bool = True, pod: bool = False) -> None:
    """A container's defaults; ``pod``: a pod's own (not a template's), whose requests default to its limits."""
    if regular:
        if not c.get("imagePullPolicy"):
            image = c.get("image") or ""
            policy = _PULL_POLICIES.get(image) if image.__class__ is str else None
            c["imagePullPolicy"] = policy or image_pull_policy(str(image))
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
    if _CONTAINER_NESTED.isdisjoint(c):
        return
    if "ports" in c:
        for port in _dicts(c["ports"]):
            port.setdefault("protocol", "TCP")
    if "env" in c:
        _env(c)
    if "resources" in c:
        res = c["resources"]
        _round_up_milli(res)
        if pod and res and isinstance(res, dict) and isinstance(res.get("limits"), dict) and res["limits"]:
            req = _d(res, "requests")
            for k, v in res["limits"].items():
                req.setdefault(k, v)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            _probe(c[probe])
    lc = c.get("lifecycle")
    if isinstance(lc, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lc.get(hook), dict):
                _handler(lc[hook])


def _field_refs(items: Any) -> None:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                ref = item.get("fieldRef")
                if isinstance(ref, dict):
                    ref.setdefault("apiVersion", "v1")


def _mode(src: Obj) -> None:
    src.setdefault("defaultMode", 420)


def _downward_api(src: Obj) -> None:
    src.setdefault("defaultMode", 420)
    _field_refs(src.get("items"))


# the projected volume the ServiceAccount admission adds to nearly every pod, defaults included:
# a pod read back and written again carries it unchanged, and one comparison (in C) shows that
# defaulting it would change nothing
_API_ACCESS_PROJECTED: Obj = {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                   "fieldPath": "metadata.namespace"}}]}}]}


def _projected(src: Obj) -> None:
    if src == _API_ACCESS_PROJECTED:  # equal means every key below is there: nothing to default
        return
    src.setdefault("defaultMode", 420)
    sources = src.get("sources")
    if not isinstance(sources, list):
        return
    for s in sources:
        if isinstance(s, dict):
            sat = s.get("serviceAccountToken")
            if isinstance(sat, dict):
                sat.setdefault("expirationSeconds", 3600)
            da = s.get("downwardAPI")
            if isinstance(da, dict):
                _field_refs(da.get("items"))


def _host_path(src: Obj) -> None:
    src.setdefault("type", "")


def _iscsi(src: Obj) -> None:
    src.setdefault("iscsiInterface", "default")


def _rbd(src: Obj) -> None:
    src.setdefault("pool", "rbd")
    src.setdefault("user", "admin")
    src.setdefault("keyring", "/etc/ceph/keyring")


def _azure_disk(src: Obj) -> None:
    src.setdefault("cachingMode", "ReadWrite")
    src.setdefault("fsType", "ext4")
    src.setdefault("readOnly", False)
    src.setdefault("kind", "Shared")


def _ephemeral(src: Obj) -> None:
    tmpl = src.get("volumeClaimTemplate")
    if isinstance(tmpl, dict):
        spec = tmpl.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("volumeMode", "Filesystem")


# volume source -> its defaulter (called with the source when it is an object); a volume has one
# source, so walking its keys beats asking for every source kind
_VOLUME_SOURCES: dict[str, Callable[[Obj], None]] = {
    "hostPath": _host_path, "secret": _mode, "configMap": _mode, "downwardAPI": _downward_api,
    "projected": _projected, "iscsi": _iscsi, "rbd": _rbd, "azureDisk": _azure_disk, "ephemeral": _ephemeral,
}


def _volume(v: Obj) -> None:
    if not v or (len(v) == 1 and "name" in v):  # no source at all: an emptyDir
        v["emptyDir"] = {}
        return
    sources = _VOLUME_SOURCES
    for key, src in v.items():
        fn = sources.get(key)
        if fn is not None and isinstance(src, dict):
            fn(src)


def _containers(cs: Any, regular: bool, pod: bool) -> None:
    if isinstance(cs, list):
        for c in cs:
            if isinstance(c, dict):
                _container(c, regular, pod)


def pod_spec(spec: Obj, pod: bool = False) -> None:
    """SetDefaults_PodSpec plus its containers and volumes (pods and templates alike)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    spec.setdefault("terminationGracePeriodSeconds", 30)
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    # absent lists cost one membership test each: most pods have containers and nothing else
    if "initContainers" in spec:
        _containers(spec["initContainers"], True, pod)
    if "containers" in spec:
        _containers(spec["containers"], True, pod)
    if "ephemeralContainers" in spec:
        _containers(spec["ephemeralContainers"], False, False)
    if "volumes" in spec:
        vols = spec["volumes"]
        if isinstance(vols, list):
            for v in vols:
                if isinstance(v, dict):
                    _volume(v)


def _template(tmpl: Any) -> None:
    if isinstance(tmpl, dict):
        pod_spec(_d(tmpl, "spec"))


def pod(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    pod_spec(spec, True)  # requests default to limits for pods only (not templates)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork"):
        for c in _dicts(spec.get("initContainers")) + _dicts(spec.get("containers")):
            for p in _dicts(c.get("ports")):
                if not p.get("hostPort") and "containerPort" in p:
                    p["hostPort"] = p["containerPort"]


def _pvc(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("volumeMode", "Filesystem")
    st = _d(obj, "status")
    st.setdefault("phase", "Pending")


def service(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "ClientIP":
        cfg = _d(spec, "sessionAffinityConfig")
        _d(cfg, "clientIP").setdefault("timeoutSeconds", 10800)
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    stype = spec["type"]
    for p in _dicts(spec.get("ports")):
        p.setdefault("protocol", "TCP")
        if p.get("targetPort") in (None, 0, "") and "port" in p:
            p["targetPort"] = p["port"]
    if stype in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if stype != "ExternalName" and not spec.get("internalTrafficPolicy"):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if stype != "ExternalName":
        # the registry's IP-family defaulting on a single-stack IPv4 cluster
        if not spec.get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = "SingleStack"
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]


def namespace(obj: Obj) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        _d(_d(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] = name
    st = _d(obj, "status")
    if not st.get("phase"):
        st["phase"] = "Active"


def node(obj: Obj) -> None:
    st = obj.get("status")
    if isinstance(st, dict) and isinstance(st.get("capacity"), dict) and st.get("allocatable") is None:
        st["allocatable"] = dict(st["capacity"])


def replication_controller(obj: Obj) -> None:
    spec = _d(obj, "spec")
    tmpl = spec.get("template")
    labels = ((tmpl or {}).get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _d(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    spec.setdefault("minReadySeconds", 0)
    _template(tmpl)


# ---- apps/v1 ---------------------------------------------------------------------------

def daemonset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    us = _d(spec, "updateStrategy")
    if not us.get("type"):
        us["type"] = "RollingUpdate"
    if us["type"] == "RollingUpdate":
        ru = _d(us, "rollingUpdate")
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(spec.get("template"))


def statefulset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    us = _d(spec, "updateStrategy")
    if not us.get("type"):
        # only an empty type brings a rollingUpdate block; an explicit RollingUpdate may omit it
        us["type"] = "RollingUpdate"
        us.setdefault("rollingUpdate", {})
    if us["type"] == "RollingUpdate" and isinstance(us.get("rollingUpdate"), dict):
        us["rollingUpdate"].setdefault("partition", 0)
    policy = _d(spec, "persistentVolumeClaimRetentionPolicy")
    if not policy.get("whenDeleted"):
        policy["whenDeleted"] = "Retain"
    if not policy.get("whenScaled"):
        policy["whenScaled"] = "Retain"
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    for t in _dicts(spec.get("volumeClaimTemplates")):
        _pvc(t)
    _template(spec.get("template"))


def deployment(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    st = _d(spec, "strategy")
    if not st.get("type"):
        st["type"] = "RollingUpdate"
    if st["type"] == "RollingUpdate":
        ru = _d(st, "rollingUpdate")
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec.get("template"))


def replicaset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("replicas", 1)
    _template(spec.get("template"))


# ---- batch/v1 --------------------------------------------------------------------------

def _job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    if not spec.get("completionMode"):
        spec["completionMode"] = "NonIndexed"
    spec.setdefault("suspend", False)
    if not spec.get("podReplacementPolicy"):
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    _template(spec.get("template"))


def job(obj: Obj) -> None:
    spec = _d(obj, "spec")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = _d(obj, "metadata")
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    _job_spec(spec)


def cronjob(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict):
        _job_spec(_d(jt, "spec"))


# ---- other groups ----------------------------------------------------------------------

def _subjects(obj: Obj) -> None:
    for s in _dicts(obj.get("subjects")):
        if not s.get("apiGroup"):
            # a ServiceAccount's apiGroup defaults to "", which Go's omitempty leaves out
            s.pop("apiGroup", None)
            if s.get("kind") in ("User", "Group"):
                s["apiGroup"] = RBAC_GROUP


def role_binding(obj: Obj) -> None:
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    _subjects(obj)


def network_policy(obj: Obj) -> None:
    spec = _d(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec.get(direction)):
            for p in _dicts(rule.get("ports")):
                p.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def csi_driver(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("attachRequired", True)
    spec.setdefault("podInfoOnMount", False)
    spec.setdefault("storageCapacity", False)
    spec.setdefault("fsGroupPolicy", "ReadWriteOnceWithFSType")
    spec.setdefault("requiresRepublish", False)
    spec.setdefault("volumeLifecycleModes", ["Persistent"])
    spec.setdefault("seLinuxMount", False)


def storage_class(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _webhooks(obj: Obj, *, mutating: bool) -> None:
    for wh in _dicts(obj.get("webhooks")):
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("timeoutSeconds", 10)
        if mutating:
            wh.setdefault("reinvocationPolicy", "Never")
        for rule in _dicts(wh.get("rules")):
            rule.setdefault("scope", "*")
        svc = (wh.get("clientConfig") or {}).get("service") if isinstance(wh.get("clientConfig"), dict) else None
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def crd(obj: Obj) -> None:
    spec = _d(obj, "spec")
    names = _d(spec, "names")
    kind = names.get("kind") or ""
    if not names.get("singular") and kind:
        names["singular"] = kind.lower()
    if not names.get("listKind") and kind:
        names["listKind"] = kind + "List"
    conv = _d(spec, "conversion")
    if not conv.get("strategy"):
        conv["strategy"] = "None"
    wh = conv.get("webhook")
    if isinstance(wh, dict):
        svc = (wh.get("clientConfig") or {}).get("service") if isinstance(wh.get("clientConfig"), dict) else None
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def endpoints(obj: Obj) -> None:
    for sub in _dicts(obj.get("subsets")):
        for p in _dicts(sub.get("ports")):
            p.setdefault("protocol", "TCP")


def endpoint_slice(obj: Obj) -> None:
    for p in _dicts(obj.get("ports")):
        p.setdefault("name", "")
        p.setdefault("protocol", "TCP")


def pv(obj: Obj) -> None:
    spec = _d(obj, "spec")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    _d(obj, "status").setdefault("phase", "Pending")


def hpa(obj: Obj) -> None:
    _d(obj, "spec").setdefault("minReplicas", 1)


def _set(key: str, value: Any) -> Callable[[Obj], None]:
    def apply(obj: Obj) -> None:
        if not obj.get(key):
            obj[key] = value
    return apply


def priority_class(obj: Obj) -> None:
    if not obj.get("preemptionPolicy"):
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def pod_template(obj: Obj) -> None:
    _template(obj.get("template"))


DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): pod,
    ("", "PodTemplate"): pod_template,
    ("", "ReplicationController"): replication_controller,
    ("", "Service"): service,
    ("", "Namespace"): namespace,
    ("", "Node"): node,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "PersistentVolume"): pv,
    ("", "Secret"): _set("type", "Opaque"),
    ("", "Endpoints"): endpoints,
    ("apps", "DaemonSet"): daemonset,
    ("apps", "StatefulSet"): statefulset,
    ("apps", "Deployment"): deployment,
    ("apps", "ReplicaSet"): replicaset,
    ("batch", "Job"): job,
    ("batch", "CronJob"): cronjob,
    ("rbac.authorization.k8s.io", "RoleBinding"): role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): role_binding,
    ("scheduling.k8s.io", "PriorityClass"): priority_class,
    ("networking.k8s.io", "NetworkPolicy"): network_policy,
    ("storage.k8s.io", "CSIDriver"): csi_driver,
    ("storage.k8s.io", "StorageClass"): storage_class,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        lambda o: _webhooks(o, mutating=False),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        lambda o: _webhooks(o, mutating=True),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): crd,
    ("discovery.k8s.io", "EndpointSlice"): endpoint_slice,
    ("autoscaling", "HorizontalPodAutoscaler"): hpa,
    (kubeling_kinds.GROUP, kubeling_kinds.KIND): kubeling_kinds.default_rollout_plan,
}


def apply_defaults(resource: Any, obj: Obj) -> None:
    """Fill in upstream's defaults in place (Resource, duck-typed object or (group, version, kind))."""
    if isinstance(resource, tuple):
        fn = DEFAULTERS.get((resource[0], resource[2]))
    else:
        fn = DEFAULTERS.get((resource.group, resource.kind))
    if fn is not None and isinstance(obj, dict):
        fn(obj)
