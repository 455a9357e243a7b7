"""Pure tests of the StatefulSet controller's planning and status (no API server)."""

from __future__ import annotations

import copy
from typing import Any

from kubeling.controllers import history
from kubeling.controllers.statefulset.plan import (
    apply_revision,
    claim_owner_refs,
    claim_owner_up_to_date,
    max_unavailable,
    new_versioned_pod,
    parent_and_ordinal,
    plan,
)
from kubeling.controllers.statefulset.status import (
    complete_rolling_update,
    count_pods,
    inconsistent,
    new_status,
    to_wire,
)

NOW = 1_700_000_000.0


def make_sts(replicas: int = 3, *, image: str = "mysql:5.7.2", policy: str = "OrderedReady",
             partition: int | None = 0, strategy: str = "RollingUpdate", claims: bool = False,
             retention: dict[str, str] | None = None, start: int | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceName": "mysql", "replicas": replicas, "podManagementPolicy": policy,
        "selector": {"matchLabels": {"app": "mysql"}},
        "template": {"metadata": {"labels": {"app": "mysql"}},
                     "spec": {"containers": [{"name": "mysql", "image": image}]}},
        "updateStrategy": {"type": strategy},
        "revisionHistoryLimit": 10,
    }
    if strategy == "RollingUpdate" and partition is not None:
        spec["updateStrategy"]["rollingUpdate"] = {"partition": partition}
    if claims:
        spec["volumeClaimTemplates"] = [{"metadata": {"name": "data"},
                                         "spec": {"accessModes": ["ReadWriteOnce"],
                                                  "resources": {"requests": {"storage": "1Gi"}}}}]
    if retention:
        spec["persistentVolumeClaimRetentionPolicy"] = retention
    if start is not None:
        spec["ordinals"] = {"start": start}
    spec.update(extra)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "mysql", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": spec, "status": {}}


def revision_of(sts: dict[str, Any], number: int = 1) -> dict[str, Any]:
    labels = sts["spec"]["template"]["metadata"]["labels"]
    return history.new_revision(sts, data=history.template_patch(sts), revision=number,
                                template_labels=labels, collision_count=0)


def running(pod: dict[str, Any], *, ready: bool = True, uid: str | None = None) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["uid"] = uid or f"uid-{pod['metadata']['name']}"
    pod["status"] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    return pod


def pods_at(sts: dict[str, Any], rev: dict[str, Any], ordinals: range, **kw: Any) -> list[dict[str, Any]]:
    rs = apply_revision(sts, rev)
    return [running(new_versioned_pod(rs, rs, rev["metadata"]["name"], rev["metadata"]["name"], i), **kw)
            for i in ordinals]


def kinds(p: Any) -> list[tuple[str, str]]:
    return [(a.kind, a.pod["metadata"]["name"]) for a in p.actions()]


# -- identity --------------------------------------------------------------------------------------

def test_parent_and_ordinal() -> None:
    assert parent_and_ordinal("mysql-12") == ("mysql", 12)
    assert parent_and_ordinal("my-sql-0") == ("my-sql", 0)
    assert parent_and_ordinal("mysql") == ("", -1)


def test_new_pod_identity_labels_and_owner() -> None:
    sts = make_sts(claims=True)
    rev = revision_of(sts)
    p = plan(sts, [], current_rev=rev, update_rev=rev, claims={}, now=NOW)
    [action] = p.actions()
    assert action.kind == "create"
    pod = action.pod
    assert pod["metadata"]["name"] == "mysql-0"
    assert pod["metadata"]["generateName"] == "mysql-"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "mysql-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["controller-revision-hash"] == rev["metadata"]["name"]
    assert labels["app"] == "mysql"
    assert pod["spec"]["hostname"] == "mysql-0"
    assert pod["spec"]["subdomain"] == "mysql"
    [ref] = pod["metadata"]["ownerReferences"]
    assert ref["kind"] == "StatefulSet" and ref["controller"] is True and ref["uid"] == "sts-uid"
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-mysql-0"}}]
    [claim] = action.claims
    assert claim["metadata"]["name"] == "data-mysql-0"
    assert claim["metadata"]["labels"] == {"app": "mysql"}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_revision_name_is_sts_dash_hash() -> None:
    sts = make_sts()
    rev = revision_of(sts)
    assert rev["metadata"]["name"] == f"mysql-{rev['metadata']['labels']['controller-revision-hash']}"
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert rev["metadata"]["labels"]["app"] == "mysql"


def test_ordinals_start() -> None:
    sts = make_sts(replicas=2, start=5, policy="Parallel")
    rev = revision_of(sts)
    p = plan(sts, [], current_rev=rev, update_rev=rev, claims={}, now=NOW)
    assert kinds(p) == [("create", "mysql-5"), ("create", "mysql-6")]


# -- OrderedReady and Parallel ---------------------------------------------------------------------

def test_ordered_ready_creates_one_at_a_time() -> None:
    sts = make_sts()
    rev = revision_of(sts)
    assert kinds(plan(sts, [], current_rev=rev, update_rev=rev, claims={}, now=NOW)) == [("create", "mysql-0")]
    not_ready = pods_at(sts, rev, range(1), ready=False)
    assert kinds(plan(sts, not_ready, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == []
    ready = pods_at(sts, rev, range(1))
    assert kinds(plan(sts, ready, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == [("create", "mysql-1")]


def test_ordered_ready_waits_for_min_ready_seconds() -> None:
    sts = make_sts(minReadySeconds=30)
    rev = revision_of(sts)
    pods = pods_at(sts, rev, range(1))
    recent = "2023-11-14T22:13:10Z"  # 10 s before NOW
    pods[0]["status"]["conditions"][0]["lastTransitionTime"] = recent
    p = plan(sts, pods, current_rev=rev, update_rev=rev, claims={}, now=NOW)
    assert kinds(p) == []
    assert p.requeue_after is not None and 0 < p.requeue_after <= 31


def test_parallel_creates_all() -> None:
    sts = make_sts(policy="Parallel")
    rev = revision_of(sts)
    p = plan(sts, [], current_rev=rev, update_rev=rev, claims={}, now=NOW)
    assert kinds(p) == [("create", "mysql-0"), ("create", "mysql-1"), ("create", "mysql-2")]


def test_scale_down_from_highest_one_at_a_time() -> None:
    sts = make_sts(replicas=1)
    rev = revision_of(sts)
    pods = pods_at(sts, rev, range(3))
    assert kinds(plan(sts, pods, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == [("delete", "mysql-2")]
    pods[2]["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    assert kinds(plan(sts, pods, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == []


def test_parallel_scale_down_deletes_all_condemned() -> None:
    sts = make_sts(replicas=1, policy="Parallel")
    rev = revision_of(sts)
    pods = pods_at(sts, rev, range(3))
    assert kinds(plan(sts, pods, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == [
        ("delete", "mysql-2"), ("delete", "mysql-1")]


def test_failed_pod_is_deleted_for_recreation() -> None:
    sts = make_sts()
    rev = revision_of(sts)
    pods = pods_at(sts, rev, range(3))
    pods[1]["status"]["phase"] = "Failed"
    assert kinds(plan(sts, pods, current_rev=rev, update_rev=rev, claims={}, now=NOW)) == [("delete", "mysql-1")]


# -- rolling updates -------------------------------------------------------------------------------

def _updated(sts: dict[str, Any], image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    new = copy.deepcopy(sts)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return new, revision_of(new, 2)


def test_rolling_update_highest_first_then_waits() -> None:
    sts = make_sts()
    cur = revision_of(sts)
    pods = pods_at(sts, cur, range(3))
    sts2, upd = _updated(sts, "mysql:5.7.23")
    p = plan(sts2, pods, current_rev=cur, update_rev=upd, claims={}, now=NOW)
    assert kinds(p) == [("delete", "mysql-2")]
    assert p.rolling_deleted == 1
    # mysql-2 gone: it comes back at the update revision, with the new image
    p = plan(sts2, pods[:2], current_rev=cur, update_rev=upd, claims={}, now=NOW)
    [create] = p.actions()
    assert create.pod["metadata"]["labels"]["controller-revision-hash"] == upd["metadata"]["name"]
    assert create.pod["spec"]["containers"][0]["image"] == "mysql:5.7.23"
    # replacement not ready yet: nothing else happens
    new2 = pods_at(sts2, upd, range(2, 3), ready=False)
    assert kinds(plan(sts2, pods[:2] + new2, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == []
    new2 = pods_at(sts2, upd, range(2, 3))
    assert kinds(plan(sts2, pods[:2] + new2, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == [
        ("delete", "mysql-1")]


def test_partition_keeps_low_ordinals_and_recreates_them_at_current_revision() -> None:
    sts = make_sts()
    cur = revision_of(sts)
    sts2, upd = _updated(sts, "mysql:5.7.24")
    sts2["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 2
    pods = pods_at(sts, cur, range(2)) + pods_at(sts2, upd, range(2, 3))
    assert kinds(plan(sts2, pods, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == []
    # mysql-0 deleted by hand: it comes back on the old template
    p = plan(sts2, pods[1:], current_rev=cur, update_rev=upd, claims={}, now=NOW)
    [create] = p.actions()
    assert create.pod["metadata"]["name"] == "mysql-0"
    assert create.pod["spec"]["containers"][0]["image"] == "mysql:5.7.2"
    assert create.pod["metadata"]["labels"]["controller-revision-hash"] == cur["metadata"]["name"]
    # lowering the partition continues the roll out
    sts2["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    assert kinds(plan(sts2, pods, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == [("delete", "mysql-1")]


def test_max_unavailable() -> None:
    sts = make_sts(replicas=4)
    cur = revision_of(sts)
    pods = pods_at(sts, cur, range(4))
    sts2, upd = _updated(sts, "x:2")
    sts2["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 2
    assert max_unavailable(sts2) == 2
    assert kinds(plan(sts2, pods, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == [
        ("delete", "mysql-3"), ("delete", "mysql-2")]
    sts2["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "50%"
    assert max_unavailable(sts2) == 2
    sts2["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "10%"
    assert max_unavailable(sts2) == 1


def test_on_delete_replaces_only_deleted_pods() -> None:
    sts = make_sts(strategy="OnDelete")
    cur = revision_of(sts)
    pods = pods_at(sts, cur, range(3))
    sts2, upd = _updated(sts, "x:2")
    assert kinds(plan(sts2, pods, current_rev=cur, update_rev=upd, claims={}, now=NOW)) == []
    p = plan(sts2, [pods[0], pods[2]], current_rev=cur, update_rev=upd, claims={}, now=NOW)
    [create] = p.actions()
    assert create.pod["metadata"]["name"] == "mysql-1"
    assert create.pod["spec"]["containers"][0]["image"] == "x:2"


# -- claims ----------------------------------------------------------------------------------------

def _claim(name: str, refs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "ownerReferences": refs or []}}


def test_existing_claim_is_not_recreated() -> None:
    sts = make_sts(claims=True)
    rev = revision_of(sts)
    p = plan(sts, [], current_rev=rev, update_rev=rev, claims={"data-mysql-0": _claim("data-mysql-0")}, now=NOW)
    [create] = p.actions()
    assert create.claims == []


def test_pending_pod_gets_missing_claims() -> None:
    sts = make_sts(claims=True)
    rev = revision_of(sts)
    [pod] = pods_at(sts, rev, range(1))
    pod["status"] = {"phase": "Pending"}
    p = plan(sts, [pod], current_rev=rev, update_rev=rev, claims={}, now=NOW)
    assert [(a.kind, [c["metadata"]["name"] for c in a.claims]) for a in p.actions()] == [
        ("create_claims", ["data-mysql-0"])]


def test_retention_policy_owner_refs() -> None:
    sts = make_sts(replicas=1, claims=True, retention={"whenDeleted": "Delete", "whenScaled": "Delete"})
    rev = revision_of(sts)
    pods = pods_at(sts, rev, range(2))
    claim0, claim1 = _claim("data-mysql-0"), _claim("data-mysql-1")
    assert not claim_owner_up_to_date(claim0, sts, pods[0])
    refs0 = claim_owner_refs(claim0, sts, pods[0])
    assert [(r["kind"], r["uid"], r["controller"]) for r in refs0] == [("StatefulSet", "sts-uid", True)]
    # mysql-1 is scaled down: its claim is owned by the pod so it goes with it
    refs1 = claim_owner_refs(claim1, sts, pods[1])
    assert [(r["kind"], r["name"]) for r in refs1] == [("Pod", "mysql-1")]
    claim0["metadata"]["ownerReferences"] = refs0
    assert claim_owner_up_to_date(claim0, sts, pods[0])
    p = plan(sts, pods, current_rev=rev, update_rev=rev, claims={"data-mysql-0": claim0, "data-mysql-1": claim1},
             now=NOW)
    assert kinds(p) == [("fix_claims", "mysql-1"), ("delete", "mysql-1")]
    retain = make_sts(claims=True)
    assert claim_owner_refs(claim0, retain, pods[0]) == []
    when_deleted = make_sts(claims=True, retention={"whenDeleted": "Delete", "whenScaled": "Retain"})
    assert [r["kind"] for r in claim_owner_refs(_claim("data-mysql-0"), when_deleted, pods[0])] == ["StatefulSet"]


def test_stale_claim_blocks_creation() -> None:
    sts = make_sts(claims=True, retention={"whenDeleted": "Retain", "whenScaled": "Delete"})
    rev = revision_of(sts)
    stale = _claim("data-mysql-0", [{"apiVersion": "v1", "kind": "Pod", "name": "mysql-0", "uid": "old",
                                     "controller": True}])
    assert kinds(plan(sts, [], current_rev=rev, update_rev=rev, claims={"data-mysql-0": stale}, now=NOW)) == []


# -- status ----------------------------------------------------------------------------------------

def test_status_counts_and_completion() -> None:
    sts = make_sts()
    cur = revision_of(sts)
    sts2, upd = _updated(sts, "x:2")
    pods = pods_at(sts, cur, range(2)) + pods_at(sts2, upd, range(2, 3), ready=False)
    counts = count_pods(pods, min_ready=0, current_rev=cur["metadata"]["name"], update_rev=upd["metadata"]["name"],
                        now=NOW)
    assert counts == {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "currentReplicas": 2,
                      "updatedReplicas": 1}
    status = new_status(sts2, counts, current_rev=cur["metadata"]["name"], update_rev=upd["metadata"]["name"],
                        collision_count=0)
    assert status["currentRevision"] == cur["metadata"]["name"]
    assert inconsistent(sts2, status)
    done = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "currentReplicas": 0, "updatedReplicas": 3,
            "currentRevision": "a", "updateRevision": "b"}
    complete_rolling_update(sts2, done)
    assert done["currentRevision"] == "b" and done["currentReplicas"] == 3
    wire = to_wire({"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "collisionCount": 0,
                    "observedGeneration": 1})
    assert wire == {"replicas": 0, "availableReplicas": 0, "collisionCount": 0, "observedGeneration": 1}
