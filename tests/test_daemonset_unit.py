"""DaemonSet planning, rolling update, status, placement and history helpers, without a server."""

from __future__ import annotations

import copy

import pytest

from kubeling.api.scheduling import (
    find_untolerated_taint,
    label_selector_matches,
    node_selector_matches,
    tolerates_taint,
)
from kubeling.controllers import history
from kubeling.controllers.daemonset.placement import node_should_run_daemon_pod
from kubeling.controllers.daemonset.plan import FailedPodBackoff, plan, pods_by_node
from kubeling.controllers.daemonset.pods import (
    daemon_pod_template,
    new_daemon_pod,
    replace_node_name_affinity,
    target_node_name,
)
from kubeling.controllers.daemonset.rolling import rolling_update, scaled_value
from kubeling.controllers.daemonset.status import compute_counts, next_status

NOW = 1_700_000_000.0
T0 = "2023-11-14T22:00:00Z"


def node(name, labels=None, taints=None, unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {"kubernetes.io/hostname": name}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable}}


def daemonset(**spec_extra):
    spec = {
        "selector": {"matchLabels": {"name": "fluentd"}},
        "template": {"metadata": {"labels": {"name": "fluentd"}},
                     "spec": {"containers": [{"name": "c", "image": "img:1"}]}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "revisionHistoryLimit": 10,
    }
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "fluentd", "namespace": "kube-system", "uid": "u1", "generation": 1,
                         "annotations": {"deprecated.daemonset.template.generation": "1"}},
            "spec": spec, "status": {}}


def pod(name, node_name, hash_="h1", *, ready=True, phase="Running", created=T0, deleting=False, bound=True):
    p = {"metadata": {"name": name, "namespace": "kube-system", "creationTimestamp": created,
                      "labels": {"name": "fluentd", "controller-revision-hash": hash_}},
         "spec": {"affinity": replace_node_name_affinity(None, node_name)},
         "status": {"phase": phase,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": T0}]}}
    if bound:
        p["spec"]["nodeName"] = node_name
    if deleting:
        p["metadata"]["deletionTimestamp"] = T0
    return p


MASTER_TAINT = {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}


# -- scheduling helpers ----------------------------------------------------------------------------

def test_toleration_matching():
    assert tolerates_taint({"key": "a", "operator": "Exists"}, {"key": "a", "value": "x", "effect": "NoSchedule"})
    assert tolerates_taint({"key": "a", "value": "x"}, {"key": "a", "value": "x", "effect": "NoExecute"})
    assert not tolerates_taint({"key": "a", "value": "y"}, {"key": "a", "value": "x", "effect": "NoExecute"})
    assert not tolerates_taint({"key": "a", "operator": "Exists", "effect": "NoSchedule"},
                               {"key": "a", "effect": "NoExecute"})
    assert tolerates_taint({"operator": "Exists"}, {"key": "anything", "effect": "NoExecute"})
    assert find_untolerated_taint([MASTER_TAINT], []) == MASTER_TAINT
    assert find_untolerated_taint([MASTER_TAINT], [{"key": MASTER_TAINT["key"], "effect": "NoSchedule"}]) is None


def test_node_selector_terms():
    n = node("n1", {"zone": "a", "cpus": "8"})
    term = lambda *exprs, fields=(): {"nodeSelectorTerms": [  # noqa: E731
        {"matchExpressions": list(exprs), "matchFields": list(fields)}]}
    assert node_selector_matches(term({"key": "zone", "operator": "In", "values": ["a", "b"]}), n)
    assert not node_selector_matches(term({"key": "zone", "operator": "NotIn", "values": ["a"]}), n)
    assert node_selector_matches(term({"key": "gpu", "operator": "DoesNotExist"}), n)
    assert node_selector_matches(term({"key": "cpus", "operator": "Gt", "values": ["4"]}), n)
    assert not node_selector_matches(term({"key": "cpus", "operator": "Lt", "values": ["4"]}), n)
    assert node_selector_matches(term(fields=[{"key": "metadata.name", "operator": "In", "values": ["n1"]}]), n)
    assert not node_selector_matches(term(fields=[{"key": "metadata.name", "operator": "In", "values": ["n2"]}]), n)
    assert not node_selector_matches({"nodeSelectorTerms": [{}]}, n)  # an empty term matches nothing
    assert not node_selector_matches({"nodeSelectorTerms": []}, n)
    # an invalid term fails alone; the other term still matches
    assert node_selector_matches({"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["x"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}, n)


def test_label_selector():
    assert label_selector_matches({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not label_selector_matches({"matchLabels": {"a": "1"}}, {"a": "2"})
    assert label_selector_matches({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {"a": "1"})
    assert not label_selector_matches(None, {"a": "1"})


# -- placement -------------------------------------------------------------------------------------

def test_master_taint_needs_toleration():
    master = node("master", taints=[MASTER_TAINT])
    ds = daemonset()
    assert node_should_run_daemon_pod(master, ds) == (False, True)  # NoSchedule only: keep, don't start
    ds["spec"]["template"]["spec"]["tolerations"] = [{"key": MASTER_TAINT["key"], "effect": "NoSchedule"}]
    assert node_should_run_daemon_pod(master, ds) == (True, True)


def test_noexecute_taint_evicts_and_default_tolerations_apply():
    ds = daemonset()
    assert node_should_run_daemon_pod(node("n", taints=[{"key": "x", "effect": "NoExecute"}]), ds) == (False, False)
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    assert node_should_run_daemon_pod(node("n", taints=[not_ready]), ds) == (True, True)
    unsched = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    assert node_should_run_daemon_pod(node("n", taints=[unsched], unschedulable=True), ds) == (True, True)
    net = {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}
    assert node_should_run_daemon_pod(node("n", taints=[net]), ds)[0] is False
    ds["spec"]["template"]["spec"]["hostNetwork"] = True
    assert node_should_run_daemon_pod(node("n", taints=[net]), ds)[0] is True


def test_node_selector_and_node_name():
    ds = daemonset()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert node_should_run_daemon_pod(node("n", {"disk": "ssd"}), ds) == (True, True)
    assert node_should_run_daemon_pod(node("n", {"disk": "hdd"}), ds) == (False, False)
    ds = daemonset()
    ds["spec"]["template"]["spec"]["nodeName"] = "a"
    assert node_should_run_daemon_pod(node("b"), ds) == (False, False)


# -- pods ------------------------------------------------------------------------------------------

def test_daemon_pod_shape():
    ds = daemonset()
    ds["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["old"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}
    template = daemon_pod_template(ds, generation=1, hash_="abc")
    p = new_daemon_pod(template, ds, "node-1")
    assert p["metadata"]["generateName"] == "fluentd-"
    assert p["metadata"]["labels"] == {"name": "fluentd", "pod-template-generation": "1",
                                       "controller-revision-hash": "abc"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd",
                                                 "uid": "u1", "controller": True, "blockOwnerDeletion": True}]
    na = p["spec"]["affinity"]["nodeAffinity"]
    assert na["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]}
    assert na["preferredDuringSchedulingIgnoredDuringExecution"] == [{"weight": 1, "preference": {}}]
    assert "nodeName" not in p["spec"]
    assert target_node_name(p) == "node-1"
    tol = [(t["key"], t["effect"]) for t in p["spec"]["tolerations"]]
    assert tol == [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                   ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                   ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                   ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                   ("node.kubernetes.io/unschedulable", "NoSchedule")]
    assert all(t["operator"] == "Exists" for t in p["spec"]["tolerations"])
    # the DaemonSet's own template is untouched
    assert "tolerations" not in ds["spec"]["template"]["spec"]


def test_existing_toleration_with_seconds_is_replaced():
    ds = daemonset()
    ds["spec"]["template"]["spec"]["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]
    spec = daemon_pod_template(ds, generation=None, hash_="h")["spec"]
    assert spec["tolerations"][0] == {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoExecute"}
    assert len(spec["tolerations"]) == 6


# -- plan ------------------------------------------------------------------------------------------

def _plan(ds, nodes, pods, backoff=None):
    return plan(ds, nodes, pods_by_node(pods, include_deleted_terminal=False), hash_="h1",
                backoff=backoff or FailedPodBackoff(), now=NOW)


def test_plan_creates_on_missing_nodes_and_respects_taints():
    ds = daemonset()
    nodes = [node("master", taints=[MASTER_TAINT]), node("n1"), node("n2")]
    actions = _plan(ds, nodes, [pod("p1", "n1")])
    assert actions.create_on_nodes == ["n2"]
    assert actions.delete_pods == []


def test_plan_counts_unbound_pods_by_affinity():
    actions = _plan(daemonset(), [node("n1")], [pod("p1", "n1", bound=False)])
    assert actions.create_on_nodes == []


def test_plan_deletes_extras_keeping_oldest_and_from_ineligible_nodes():
    ds = daemonset()
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"role": "log"}
    nodes = [node("n1", {"role": "log"}), node("n2", {"role": "web"})]
    pods = [pod("young", "n1", created="2023-11-14T22:05:00Z"), pod("old", "n1"), pod("p2", "n2")]
    actions = _plan(ds, nodes, pods)
    assert sorted(actions.delete_pods) == ["p2", "young"]


def test_plan_deletes_pods_on_vanished_nodes():
    actions = _plan(daemonset(), [node("n1")], [pod("p1", "n1"), pod("gone", "n9")])
    assert actions.delete_pods == ["gone"]


def test_failed_pod_deleted_with_backoff_and_event():
    backoff = FailedPodBackoff()
    ds = daemonset()
    failed = pod("bad", "n1", phase="Failed", ready=False)
    first = plan(ds, [node("n1")], {"n1": [failed]}, hash_="h1", backoff=backoff, now=NOW)
    assert first.delete_pods == ["bad"]
    assert first.events == [("Warning", "FailedDaemonPod",
                              "Found failed daemon pod kube-system/bad on node n1, will try to kill it")]
    again = plan(ds, [node("n1")], {"n1": [failed]}, hash_="h1", backoff=backoff, now=NOW + 0.5)
    assert again.delete_pods == [] and again.requeue_after == 1.0
    later = plan(ds, [node("n1")], {"n1": [failed]}, hash_="h1", backoff=backoff, now=NOW + 1.5)
    assert later.delete_pods == ["bad"]
    key = next(iter(backoff._entries))
    assert backoff.get(key) == 2.0
    for i in range(20):
        backoff.next(key, NOW + 10 + i)
    assert backoff.get(key) == 900.0


def test_surge_keeps_old_until_new_available():
    ds = daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    old = pod("old", "n1", hash_="h0")
    new_unready = pod("new", "n1", hash_="h1", ready=False, created="2023-11-14T22:05:00Z")
    assert _plan(ds, [node("n1")], [old, new_unready]).delete_pods == []
    new_ready = pod("new", "n1", hash_="h1", created="2023-11-14T22:05:00Z")
    assert _plan(ds, [node("n1")], [old, new_ready]).delete_pods == ["old"]


# -- rolling update --------------------------------------------------------------------------------

def test_scaled_value_rounds_up():
    assert scaled_value("10%", 5, round_up=True) == 1
    assert scaled_value("25%", 10, round_up=True) == 3
    assert scaled_value(2, 10, round_up=True) == 2


def test_rolling_update_max_unavailable():
    ds = daemonset()
    nodes = [node(f"n{i}") for i in range(4)]
    pods = {f"n{i}": [pod(f"p{i}", f"n{i}", hash_="h0")] for i in range(4)}
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert len(step.delete_pods) == 1 and step.create_on_nodes == []
    # one node already unavailable (no pod yet): nothing more may go
    pods["n0"] = []
    assert rolling_update(ds, nodes, pods, hash_="h1", now=NOW).delete_pods == []
    # unavailable old pods are replaced outside the budget (as upstream), then one available one
    pods["n0"] = [pod("p0", "n0", hash_="h1")]
    pods["n1"] = [pod("p1", "n1", hash_="h0", ready=False)]
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert step.delete_pods == ["p1", "p2"]


def test_rolling_update_surge():
    ds = daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    nodes = [node(f"n{i}") for i in range(3)]
    pods = {f"n{i}": [pod(f"p{i}", f"n{i}", hash_="h0")] for i in range(3)}
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert step.delete_pods == [] and step.create_on_nodes == ["n0"]
    pods["n0"].append(pod("new0", "n0", hash_="h1", ready=False))
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert step.delete_pods == [] and step.create_on_nodes == []
    pods["n0"][1] = pod("new0", "n0", hash_="h1")
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert step.delete_pods == ["p0"] and step.create_on_nodes == ["n1"]  # the next node surges at once


def test_on_delete_does_nothing():
    ds = daemonset(updateStrategy={"type": "OnDelete"})
    nodes = [node("n1"), node("n2")]
    pods = {"n1": [pod("p1", "n1", hash_="h0")], "n2": [pod("p2", "n2", hash_="h0")]}
    step = rolling_update(ds, nodes, pods, hash_="h1", now=NOW)
    assert step.delete_pods == [] and step.create_on_nodes == []


# -- status ----------------------------------------------------------------------------------------

def test_status_counts():
    ds = daemonset()
    nodes = [node("master", taints=[MASTER_TAINT]), node("n1"), node("n2"), node("n3")]
    pods = {"master": [pod("pm", "master")], "n1": [pod("p1", "n1")], "n2": [pod("p2", "n2", hash_="h0",
                                                                                ready=False)]}
    counts = compute_counts(ds, nodes, pods, hash_="h1", now=NOW)
    assert counts == {"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3,
                      "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberUnavailable": 2}
    ds["status"] = {**counts, "observedGeneration": 1}
    assert next_status(ds, counts, observe_generation=True) is None
    ds["metadata"]["generation"] = 2
    assert next_status(ds, counts, observe_generation=True)["observedGeneration"] == 2
    assert next_status(ds, counts, observe_generation=False) is None


def test_min_ready_seconds_gate_availability():
    ds = daemonset(minReadySeconds=600)
    counts = compute_counts(ds, [node("n1")], {"n1": [pod("p1", "n1")]}, hash_="h1", now=1_699_999_210.0)
    assert counts["numberReady"] == 1 and counts["numberAvailable"] == 0
    counts = compute_counts(ds, [node("n1")], {"n1": [pod("p1", "n1")]}, hash_="h1", now=NOW + 3600 * 24 * 400)
    assert counts["numberAvailable"] == 1


# -- history ---------------------------------------------------------------------------------------

def test_safe_encode_and_hash():
    assert history.safe_encode_string("0123456789") == "zb24567898"[:0] + "".join(
        "bcdfghjklmnpqrstvwxz2456789"[ord(c) % 27] for c in "0123456789")
    assert history.fnv32a(b"") == 0x811C9DC5
    assert history.fnv32a(b"a") == 0xE40C292C
    data = history.template_patch_bytes(daemonset())
    h0 = history.hash_revision_data(data)
    assert h0 == history.hash_revision_data(data)
    assert h0 != history.hash_revision_data(data, 1)
    assert set(h0) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_template_patch_is_go_json():
    ds = daemonset()
    ds["spec"]["template"]["metadata"]["annotations"] = {"x": "<a&b>"}
    raw = history.template_patch_bytes(ds)
    assert raw.startswith(b'{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"x":"\\u003ca\\u0026b\\u003e"}')
    assert b'"creationTimestamp":null' in raw
    assert b'"resources":{}' in raw
    assert b" " not in raw


def test_revision_object_and_match():
    ds = daemonset()
    ds["metadata"]["annotations"]["kubernetes.io/change-cause"] = "kubectl set image"
    rev = history.new_revision(ds, data=history.template_patch(ds), revision=1,
                               template_labels={"name": "fluentd"}, collision_count=None,
                               annotations=ds["metadata"]["annotations"])
    h = rev["metadata"]["labels"]["controller-revision-hash"]
    assert rev["metadata"]["name"] == f"fluentd-{h}"
    assert rev["metadata"]["labels"]["name"] == "fluentd"
    assert rev["metadata"]["annotations"]["kubernetes.io/change-cause"] == "kubectl set image"
    assert rev["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert history.matches_template(ds, rev)
    changed = copy.deepcopy(ds)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    assert not history.matches_template(changed, rev)


@pytest.mark.parametrize(("limit", "live", "expected"), [
    (1, set(), ["r1", "r2"]),
    (1, {"h1"}, ["r2", "r3"]),
    (5, set(), []),
    (0, {"h3"}, ["r1", "r2"]),
])
def test_revisions_to_prune(limit, live, expected):
    old = [{"metadata": {"name": f"r{i}", "labels": {"controller-revision-hash": f"h{i}"}}, "revision": i}
           for i in (3, 1, 2)]
    assert [r["metadata"]["name"] for r in history.revisions_to_prune(old, limit, live)] == expected


def test_revision_numbers():
    revs = [{"revision": 2}, {"revision": 5}]
    assert history.next_revision(revs) == 6
    assert history.next_revision([]) == 1


def test_incremental_pod_index_and_counts_match_a_full_recomputation() -> None:
    """ClaimedPods (updated from changed pods only) and its running status counts agree, after every
    batch of random pod events, with grouping and counting everything from scratch."""
    import random

    from kubeling.api.scheduling import label_selector_matches
    from kubeling.client.informer import object_key
    from kubeling.controllers.daemonset.plan import pods_by_node
    from kubeling.controllers.daemonset.podindex import ClaimedPods, selector_key
    from kubeling.controllers.daemonset.pods import is_deleting, is_pod_updated
    from kubeling.controllers.daemonset.status import compute_counts

    rnd = random.Random(7)
    ds = {"metadata": {"uid": "U", "namespace": "ns", "name": "d",
                       "annotations": {"deprecated.daemonset.template.generation": "2"}},
          "spec": {"selector": {"matchLabels": {"app": "x"}}}}
    store: dict[str, dict] = {}

    def owned_by_ds(p: dict) -> bool:
        return any(r.get("controller") and r["uid"] == "U" for r in p["metadata"].get("ownerReferences") or [])

    def make(i: int) -> dict:
        owner = rnd.choice(["U", "U", "U", "V", None])
        p = {"metadata": {"name": f"p{i}", "namespace": "ns", "uid": f"u{i}",
                          "labels": {"app": rnd.choice(["x", "x", "x", "y"]),
                                     "controller-revision-hash": rnd.choice(["x", "y"]),
                                     "pod-template-generation": rnd.choice(["1", "2"])},
                          "creationTimestamp": f"2026-01-01T00:00:{rnd.randrange(60):02d}Z"},
             "spec": {}, "status": {"phase": rnd.choice(["Running", "Failed", "Pending"])}}
        if owner:
            p["metadata"]["ownerReferences"] = [{"uid": owner, "controller": True}]
        if rnd.random() < 0.2:
            p["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
        if rnd.random() < 0.9:
            p["spec"]["nodeName"] = f"n{rnd.randrange(20)}"
        if rnd.random() < 0.5:
            p["status"]["conditions"] = [{"type": "Ready", "status": rnd.choice(["True", "False"])}]
        return p

    def claimed() -> list[dict]:
        return [p for p in store.values()
                if owned_by_ds(p) and label_selector_matches(ds["spec"]["selector"], p["metadata"]["labels"])]

    def grouped(d: dict) -> dict:
        return {k: sorted(object_key(p) for p in v) for k, v in d.items()}

    idx = ClaimedPods("U", "ns")
    nodes = [{"metadata": {"name": f"n{k}"}} for k in range(15)]  # some pods sit on unlisted nodes
    placements = {f"n{k}": (k % 4 != 0, k % 8 != 0) for k in range(15)}
    checks = 0
    for _ in range(4000):
        i = rnd.randrange(60)
        key = f"ns/p{i}"
        old = store.get(key)
        if rnd.random() < 0.2:
            store.pop(key, None)
        else:
            store[key] = make(i)
        if any(p is not None and owned_by_ds(p) for p in (old, store.get(key))):
            idx.mark(key)
        if rnd.random() < 0.3:
            if not idx.refresh(ds, store.get):
                idx.invalidate()
                idx.rebuild(claimed(), selector_key(ds))
            want = pods_by_node(claimed(), include_deleted_terminal=False)
            assert grouped(idx.by_node) == grouped(want)
            for h, g in (("x", 1), ("y", None), ("", 2)):
                outdated = any(not is_deleting(p) and not is_pod_updated(p, h, g) for ps in want.values() for p in ps)
                assert idx.has_outdated(h, g) == outdated
            got = idx.counts.counts(ds, nodes, idx.by_node, idx.take_changed_nodes(), hash_="x", now=0,
                                    placements=placements)
            assert got == compute_counts(ds, nodes, idx.by_node, hash_="x", now=0, placements=placements)
            checks += 1
    assert checks > 1000
