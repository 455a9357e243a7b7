"""The real kubectl against `kubeling up`: what users see (messages, columns, errors) as upstream 1.32 prints it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tests.conftest import require_shared

DS = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
  labels: {{tier: agent}}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {sel}}}
    spec:
      containers:
      - name: c
        image: {image}
        env:
        - {{name: A, value: "1"}}
"""


def write(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def ds_yaml(name: str, *, sel: str | None = None, image: str = "nginx:1.27") -> str:
    return DS.format(name=name, sel=sel or name, image=image)


def test_version_namespaces_and_api_resources(cluster):
    out = cluster.kubectl("version")
    assert "Server Version: v1.32." in out
    ns = cluster.kubectl("get", "ns")
    assert ns.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    names = {line.split()[0] for line in ns.splitlines()[1:]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    res = cluster.kubectl("api-resources")
    assert res.splitlines()[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = {line.split()[0]: line.split() for line in res.splitlines()[1:]}
    assert rows["daemonsets"][1:] == ["ds", "apps/v1", "true", "DaemonSet"]
    assert rows["nodes"][1:] == ["no", "v1", "false", "Node"]
    assert rows["leases"][1:] == ["coordination.k8s.io/v1", "true", "Lease"]
    for name in ("pods", "statefulsets", "controllerrevisions", "events", "priorityclasses", "clusterroles",
                 "poddisruptionbudgets", "deployments", "jobs", "customresourcedefinitions"):
        assert name in rows


def test_daemonset_create_get_describe_delete(cluster, tmp_path):
    f = write(tmp_path, "ds.yaml", ds_yaml("web"))
    assert cluster.kubectl("create", "-f", f).strip() == "daemonset.apps/web created"
    r = cluster.kubectl_result("create", "-f", f)
    assert r.returncode != 0
    assert f'Error from server (AlreadyExists): error when creating "{f}": daemonsets.apps "web" already exists' \
        in r.stderr
    wide = cluster.kubectl("get", "ds", "web", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                               "SELECTOR", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    cells = wide[1].split()
    assert cells[0] == "web" and cells[6] == "<none>" and cells[-3:] == ["c", "nginx:1.27", "app=web"]
    obj = json.loads(cluster.kubectl("get", "daemonset", "web", "-o", "json"))
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert obj["spec"]["revisionHistoryLimit"] == 10
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["terminationMessagePath"] == "/dev/termination-log"
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert obj["metadata"]["generation"] == 1
    y = yaml.safe_load(cluster.kubectl("get", "ds/web", "-o", "yaml"))
    assert y["metadata"]["uid"] == obj["metadata"]["uid"]
    assert cluster.kubectl("get", "ds", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}") == \
        "nginx:1.27"
    desc = cluster.kubectl("describe", "ds", "web")
    assert "Name:           web" in desc and "Selector:       app=web" in desc and "nginx:1.27" in desc
    # a ControllerRevision, if the controller made one, prints upstream's columns
    crs = cluster.kubectl("get", "controllerrevisions")
    if crs.strip():
        assert crs.splitlines()[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert cluster.kubectl("delete", "ds", "web").strip() == 'daemonset.apps "web" deleted'
    r = cluster.kubectl_result("get", "ds", "web")
    assert r.stderr.strip() == 'Error from server (NotFound): daemonsets.apps "web" not found'


def test_invalid_and_strict_errors(cluster, tmp_path):
    f = write(tmp_path, "bad.yaml", ds_yaml("bad", sel="other"))
    r = cluster.kubectl_result("create", "-f", f)
    assert r.returncode == 1
    assert r.stderr.startswith('The DaemonSet "bad" is invalid: spec.template.metadata.labels: Invalid value: '
                               'map[string]string{"app":"other"}: `selector` does not match template `labels`')
    unknown = ds_yaml("unk").replace("spec:\n  selector", "spec:\n  foo: 1\n  selector", 1)
    f = write(tmp_path, "unk.yaml", unknown)
    r = cluster.kubectl_result("create", "-f", f)
    assert r.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{f}": DaemonSet in version "v1" cannot be '
        'handled as a DaemonSet: strict decoding error: unknown field "spec.foo"')
    r = cluster.kubectl_result("apply", "-f", f)
    assert 'strict decoding error: unknown field "spec.foo"' in r.stderr
    r = cluster.kubectl_result("get", "pods", "x")
    assert r.stderr.strip() == 'Error from server (NotFound): pods "x" not found'
    r = cluster.kubectl_result("delete", "pod", "x")
    assert r.stderr.strip() == 'Error from server (NotFound): pods "x" not found'


def test_apply_create_unchanged_configured_and_field_removal(cluster, tmp_path):
    text = ds_yaml("ap")
    f = write(tmp_path, "ap.yaml", text)
    assert cluster.kubectl("apply", "-f", f).strip() == "daemonset.apps/ap created"
    assert cluster.kubectl("apply", "-f", f).strip() == "daemonset.apps/ap unchanged"
    edited = text.replace("nginx:1.27", "nginx:1.28").replace('        - {name: A, value: "1"}\n',
                                                               '        - {name: A, value: "1"}\n'
                                                               '        - {name: B, value: "2"}\n')
    write(tmp_path, "ap.yaml", edited)
    assert cluster.kubectl("apply", "-f", f).strip() == "daemonset.apps/ap configured"
    obj = json.loads(cluster.kubectl("get", "ds", "ap", "-o", "json"))
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert [e["name"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]] == ["A", "B"]
    assert obj["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    # removing a field (the env var B, the label) from the manifest removes it from the object
    removed = edited.replace('        - {name: B, value: "2"}\n', "").replace("  labels: {tier: agent}\n", "")
    write(tmp_path, "ap.yaml", removed)
    assert cluster.kubectl("apply", "-f", f).strip() == "daemonset.apps/ap configured"
    obj = json.loads(cluster.kubectl("get", "ds", "ap", "-o", "json"))
    assert [e["name"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]] == ["A"]
    assert "tier" not in (obj["metadata"].get("labels") or {})
    assert cluster.kubectl("apply", "-f", f).strip() == "daemonset.apps/ap unchanged"
    cluster.kubectl("delete", "-f", f)


def test_patch_label_annotate(cluster, tmp_path):
    cluster.kubectl("apply", "-f", write(tmp_path, "p.yaml", ds_yaml("pt")))
    assert cluster.kubectl("patch", "ds", "pt", "--type", "merge", "-p",
                           '{"metadata":{"labels":{"m":"1"}}}').strip() == "daemonset.apps/pt patched"
    assert cluster.kubectl("patch", "ds", "pt", "--type", "json", "-p",
                           '[{"op":"add","path":"/metadata/labels/j","value":"2"}]').strip() == \
        "daemonset.apps/pt patched"
    # strategic: containers merge by name, so only the image changes
    assert cluster.kubectl("patch", "ds", "pt", "-p",
                           '{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}'
                           ).strip() == "daemonset.apps/pt patched"
    assert cluster.kubectl("patch", "ds", "pt", "--type", "merge", "-p",
                           '{"metadata":{"labels":{"m":"1"}}}').strip() == "daemonset.apps/pt patched (no change)"
    obj = json.loads(cluster.kubectl("get", "ds", "pt", "-o", "json"))
    assert obj["metadata"]["labels"] == {"tier": "agent", "m": "1", "j": "2"}
    c = obj["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["image"] == "nginx:2" and c[0]["env"] == [{"name": "A", "value": "1"}]
    r = cluster.kubectl_result("patch", "ds", "pt", "--type", "json", "-p", '[{"op":"test","path":"/x","value":1}]')
    assert r.returncode != 0 and "testing value /x failed" in r.stderr
    assert cluster.kubectl("label", "ds", "pt", "color=blue").strip() == "daemonset.apps/pt labeled"
    r = cluster.kubectl_result("label", "ds", "pt", "color=red")
    assert "'color' already has a value (blue), and --overwrite is false" in r.stderr
    assert cluster.kubectl("label", "ds", "pt", "color-").strip() == "daemonset.apps/pt unlabeled"
    assert cluster.kubectl("annotate", "ds", "pt", "note=hi").strip() == "daemonset.apps/pt annotated"
    shown = cluster.kubectl("get", "ds", "pt", "--show-labels").splitlines()
    assert shown[0].split()[-1] == "LABELS" and shown[1].split()[-1] == "j=2,m=1,tier=agent"
    assert cluster.kubectl("get", "ds", "-l", "m=1", "-o", "name").split() == ["daemonset.apps/pt"]
    cluster.kubectl("delete", "ds", "pt")


NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}}}
status:
  capacity: {{cpu: "4", memory: 8Gi, pods: "110"}}
"""


def test_nodes_taint_label_and_columns(cluster, tmp_path):
    f = write(tmp_path, "n.yaml", NODE.format(name="n1"))
    assert cluster.kubectl("create", "-f", f).strip() == "node/n1 created"
    out = cluster.kubectl("get", "nodes").splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    wide = cluster.kubectl("get", "no", "n1", "-o", "wide").splitlines()
    assert wide[0].split()[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    assert cluster.kubectl("taint", "node", "n1", "k=v:NoSchedule").strip() == "node/n1 tainted"
    r = cluster.kubectl_result("taint", "node", "n1", "k=v:NoSchedule")
    assert "node n1 already has k taint(s) with same effect(s) and --overwrite is false" in r.stderr
    taints = json.loads(cluster.kubectl("get", "node", "n1", "-o", "jsonpath={.spec.taints}"))
    assert taints == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    assert cluster.kubectl("taint", "node", "n1", "k-").strip() == "node/n1 untainted"
    assert cluster.kubectl("label", "node", "n1", "role=edge").strip() == "node/n1 labeled"
    assert cluster.kubectl("cordon", "n1").strip() == "node/n1 cordoned"
    assert cluster.kubectl("get", "nodes", "--field-selector", "spec.unschedulable=true", "-o", "name").split() == \
        ["node/n1"]
    assert "Taints:" in cluster.kubectl("describe", "node", "n1")
    assert cluster.kubectl("delete", "node", "n1").strip() == 'node "n1" deleted'


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: demo}}
spec:
  containers:
  - name: main
    image: busybox
"""


def test_pods_get_wide_describe_delete_and_watch(cluster, tmp_path):
    f = write(tmp_path, "pod.yaml", POD.format(name="p1"))
    assert cluster.kubectl("create", "-f", f).strip() == "pod/p1 created"
    out = cluster.kubectl("get", "pods", "p1").splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out[1].split()[:4] == ["p1", "0/1", "Pending", "0"]
    wide = cluster.kubectl("get", "po", "p1", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                               "READINESS", "GATES"]
    pod = json.loads(cluster.kubectl("get", "pod", "p1", "-o", "json"))
    spec = pod["spec"]
    assert spec["containers"][0]["imagePullPolicy"] == "Always"  # no tag means :latest
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler" and spec["terminationGracePeriodSeconds"] == 30
    assert spec["serviceAccountName"] == "default"
    assert any(v["name"].startswith("kube-api-access-") for v in spec["volumes"])
    assert pod["status"]["qosClass"] == "BestEffort"
    desc = cluster.kubectl("describe", "pod", "p1")
    assert "Name:             p1" in desc and "Status:           Pending" in desc

    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    watcher = subprocess.Popen(["kubectl", "get", "pods", "-l", "app=demo", "-w", "--output-watch-events"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = watcher.stdout.readline()  # header
        assert first.split()[:3] == ["EVENT", "NAME", "READY"]
        line = watcher.stdout.readline()
        assert line.split()[:2] == ["ADDED", "p1"]
        cluster.kubectl("label", "pod", "p1", "seen=yes")
        line = watcher.stdout.readline()
        assert line.split()[:2] == ["MODIFIED", "p1"]
        # an unbound pod is deleted at once (no kubelet to wait for)
        assert cluster.kubectl("delete", "pod", "p1").strip() == 'pod "p1" deleted'
        line = watcher.stdout.readline()
        assert line.split()[:2] == ["DELETED", "p1"]
    finally:
        watcher.kill()
        watcher.wait()


STS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "mysql:8"}]
"""


def test_statefulset_scale_and_columns(cluster, tmp_path):
    f = write(tmp_path, "sts.yaml", STS)
    assert cluster.kubectl("apply", "-f", f).strip() == "statefulset.apps/db created"
    out = cluster.kubectl("get", "sts", "-o", "wide").splitlines()
    assert out[0].split() == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert out[1].split()[0] == "db" and out[1].split()[-2:] == ["db", "mysql:8"]
    assert cluster.kubectl("scale", "sts", "db", "--replicas=3").strip() == "statefulset.apps/db scaled"
    assert cluster.kubectl("get", "sts", "db", "-o", "jsonpath={.spec.replicas}") == "3"
    obj = json.loads(cluster.kubectl("get", "sts", "db", "-o", "json"))
    assert obj["spec"]["podManagementPolicy"] == "OrderedReady"
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert "statefulset.apps/db" in cluster.kubectl("get", "all")
    assert cluster.kubectl("delete", "-f", f).strip() == 'statefulset.apps "db" deleted'


CR = """\
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: rev1, labels: {a: b}}
revision: 3
data: {spec: {template: {metadata: {labels: {a: b}}}}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lock}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: v1
kind: Event
metadata: {name: ev1}
involvedObject: {kind: Pod, name: somepod, namespace: default}
reason: Testing
message: hello there
type: Normal
source: {component: tester}
"""


def test_controllerrevisions_leases_events(cluster, tmp_path):
    f = write(tmp_path, "misc.yaml", CR)
    out = cluster.kubectl("create", "-f", f).split("\n")
    assert out[:3] == ["controllerrevision.apps/rev1 created", "lease.coordination.k8s.io/lock created",
                       "event/ev1 created"]
    cr = cluster.kubectl("get", "controllerrevision", "rev1").splitlines()
    assert cr[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"] and cr[1].split()[:3] == ["rev1", "<none>", "3"]
    lease = cluster.kubectl("get", "lease", "lock").splitlines()
    assert lease[0].split() == ["NAME", "HOLDER", "AGE"] and lease[1].split()[:2] == ["lock", "me"]
    ev = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=somepod").splitlines()
    assert ev[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ev[1].split()[1:] == ["Normal", "Testing", "pod/somepod", "hello", "there"]
    assert cluster.kubectl("patch", "lease", "lock", "--type", "merge", "-p",
                           '{"spec":{"holderIdentity":"you"}}').strip() == "lease.coordination.k8s.io/lock patched"
    assert cluster.kubectl("annotate", "controllerrevision", "rev1", "x=y").strip() == \
        "controllerrevision.apps/rev1 annotated"
    assert cluster.kubectl("delete", "-f", f).split("\n")[:3] == [
        'controllerrevision.apps "rev1" deleted', 'lease.coordination.k8s.io "lock" deleted', 'event "ev1" deleted']


def test_explain(cluster):
    out = cluster.kubectl("explain", "daemonset.spec.updateStrategy")
    assert "KIND:       DaemonSet" in out and "FIELD: updateStrategy <DaemonSetUpdateStrategy>" in out
    assert "An update strategy to replace existing DaemonSet pods with new pods." in out
    assert "rollingUpdate\t<RollingUpdateDaemonSet>" in out
    out = cluster.kubectl("explain", "pods.spec.containers.name")
    assert "FIELD: name <string>" in out


def test_create_namespace_generator(cluster):
    # kubectl's typed clients send protobuf bodies
    assert cluster.kubectl("create", "namespace", "gen-ns").strip() == "namespace/gen-ns created"
    assert cluster.kubectl("create", "configmap", "cm1", "-n", "gen-ns", "--from-literal=a=b").strip() == \
        "configmap/cm1 created"
    assert cluster.kubectl("get", "cm", "cm1", "-n", "gen-ns", "-o", "jsonpath={.data.a}") == "b"
    assert cluster.kubectl("create", "secret", "generic", "s1", "-n", "gen-ns", "--from-literal=k=v").strip() == \
        "secret/s1 created"
    assert cluster.kubectl("get", "secret", "s1", "-n", "gen-ns", "-o", "jsonpath={.data.k}") == "dg=="


def _manifests() -> list[Path]:
    shared = require_shared()
    return sorted((shared / "real-manifests").glob("*.yaml")) + sorted((shared / "manifests").glob("*.yaml"))


def _has_null(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, dict):
        return any(_has_null(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_null(x) for x in v)
    return False


def _reapply_configured_upstream(doc: dict) -> bool:
    """Objects kubectl re-patches on every apply against real Kubernetes too: explicit nulls and status
    stanzas (never equal to the live object), PDB v1's `replace` selector, webhook rules the server defaults."""
    return _has_null(doc) or "status" in doc or doc.get("kind") in (
        "PodDisruptionBudget", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def test_real_manifests_apply_and_reapply(cluster):
    """Every shared manifest applies unchanged under Strict validation, then re-applies as unchanged.

    One kubectl run for all files: kubectl's own client-side work dominates, not the server."""
    cluster.kubectl("create", "namespace", "logging")  # fluent-bit's README pre-step
    paths = _manifests()
    args = [a for p in paths for a in ("-f", str(p))]
    out = cluster.kubectl("apply", *args)
    lines = [x for x in out.splitlines() if x.strip()]
    assert all(x.endswith((" created", " configured", " unchanged")) for x in lines), out
    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(lines) == len(docs)
    exempt = {d["metadata"]["name"] for d in docs if _reapply_configured_upstream(d)}
    again = cluster.kubectl("apply", *args)
    for line in again.splitlines():
        if not line.strip():
            continue
        name = line.split()[0].split("/", 1)[1]
        assert line.endswith(" unchanged") or name in exempt, line
