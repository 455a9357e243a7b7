"""RolloutPlan arithmetic, decisions and the DaemonSet hold-back, as pure functions."""

from __future__ import annotations

from kubeling.api import kubeling_kinds, schema
from kubeling.api.catalogue import get_catalogue
from kubeling.api.defaults import apply_defaults
from kubeling.api.strategies import strategy_for
from kubeling.api.tables import to_table
from kubeling.controllers.daemonset import holdback
from kubeling.controllers.daemonset.rolling import rolling_update
from kubeling.controllers.rollout import steps
from kubeling.controllers.rollout.observe import HELD_BACK, observe
from kubeling.controllers.rollout.reconcile import decide

NOW = 1_700_000_000.0
TS = "2023-11-14T22:13:20Z"  # NOW


def node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def ds(image="a:v1", **spec):
    return {"metadata": {"name": "agent", "namespace": "default", "uid": "u1", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "a", "image": image}]}}, **spec}}


def pod(name, node_name, hash_, *, ready=True, waiting=None):
    status = {"phase": "Running",
              "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": TS}]}
    if waiting:
        status["containerStatuses"] = [{"name": "a", "state": {"waiting": {"reason": waiting, "message": "boom"}}}]
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": TS,
                         "labels": {"app": "a", "controller-revision-hash": hash_},
                         "ownerReferences": [{"kind": "DaemonSet", "name": "agent", "uid": "u1", "controller": True}]},
            "spec": {"nodeName": node_name}, "status": status}


def plan(status=None, **spec):
    body = {"targetRef": {"kind": "DaemonSet", "name": "agent"},
            "steps": [{"nodes": "20%", "pause": {}}, {"nodes": "60%"}, {"nodes": "100%"}], **spec}
    p = {"metadata": {"name": "p", "namespace": "default", "generation": 1}, "spec": body, "status": status or {}}
    apply_defaults(kubeling_kinds.rollout_plan_resource(), p)
    return p


NODES = [node(f"n{i}") for i in range(1, 11)]


# ---- ordering and step math ------------------------------------------------------------------------

def test_canary_nodes_come_first_then_by_name():
    nodes = NODES[:5] + [node("n9", {"canary": "true"})]
    p = plan(canaryNodes={"matchLabels": {"canary": "true"}})
    assert steps.rollout_order(p, nodes) == ["n9", "n1", "n2", "n3", "n4", "n5"]


def test_topology_spread_interleaves_zones():
    nodes = [node(f"n{i}", {"zone": z}) for i, z in enumerate("aaabbbccc")]
    order = steps.rollout_order(plan(topologyKey="zone"), nodes)
    assert order[:3] == ["n0", "n3", "n6"]
    for k in (3, 6):
        zones = [next(n for n in nodes if n["metadata"]["name"] == x)["metadata"]["labels"]["zone"]
                 for x in order[:k]]
        assert sorted(zones.count(z) for z in "abc") == [k // 3] * 3


def test_step_count_rounds_up_and_includes_all_canaries():
    p = plan()
    assert [steps.step_count(p, i, eligible=10, canaries=0) for i in range(3)] == [2, 6, 10]
    assert steps.step_count(p, 0, eligible=10, canaries=3) == 3
    assert steps.step_count(plan(steps=[{"nodes": "10%"}]), 0, eligible=5, canaries=0) == 1


def test_max_failed_rounds_down():
    assert steps.max_failed(plan(failurePolicy={"maxFailedNodes": "5%"}), 100) == 5
    assert steps.max_failed(plan(failurePolicy={"maxFailedNodes": "5%"}), 10) == 0


def test_allowed_update_nodes_states():
    order = [f"n{i}" for i in range(1, 11)]
    kw = {"order": order, "canaries": 0, "updated": {"n1"}}
    assert steps.allowed_update_nodes(None, hash_="new", **kw) is None
    assert steps.allowed_update_nodes(plan({"stableRevision": "new"}), hash_="new", **kw) is None
    assert steps.allowed_update_nodes(plan({"stableRevision": "old", "updateRevision": "older"}),
                                      hash_="new", **kw) == set()
    st = {"stableRevision": "old", "updateRevision": "new", "currentStep": 1, "phase": "Progressing"}
    assert steps.allowed_update_nodes(plan(st), hash_="new", **kw) == set(order[:6])
    assert steps.allowed_update_nodes(plan(st, paused=True), hash_="new", **kw) == {"n1"}
    assert steps.allowed_update_nodes(plan({**st, "phase": "RolledBack"}), hash_="new", **kw) == set()


# ---- decisions -------------------------------------------------------------------------------------

def _obs(p, pods, d=None, nodes=NODES, hash_="new"):
    return observe(p, d or ds(), nodes, pods, hash_=hash_, now=NOW)


def test_first_sight_takes_current_revision_as_stable():
    p = plan()
    dec = decide(p, update_hash="h1", ds_generation=1, obs=_obs(p, [], hash_="h1"), now=NOW)
    assert dec.status["stableRevision"] == "h1" and dec.status["phase"] == "Succeeded"


def test_new_revision_is_acknowledged_at_step_zero():
    p = plan({"stableRevision": "old", "updateRevision": "old", "phase": "Succeeded", "currentStep": 2})
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, []), now=NOW)
    assert dec.status["updateRevision"] == "new" and dec.status["currentStep"] == 0
    assert dec.status["phase"] == "Progressing" and dec.events[0][1] == "RolloutStarted"


def _rolling(step=0, **extra):
    return {"stableRevision": "old", "updateRevision": "new", "phase": "Progressing", "currentStep": step,
            "lastProgressTime": TS, **extra}


def _pods(new_nodes, bad=()):
    return [pod(f"p{n}", n, "new", ready=n not in bad, waiting="ImagePullBackOff" if n in bad else None)
            if n in new_nodes else pod(f"p{n}", n, "old") for n in (x["metadata"]["name"] for x in NODES)]


def test_indefinite_pause_waits_for_promote_of_this_revision():
    p = plan(_rolling())
    pods = _pods({"n1", "n2"})
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW)
    assert dec.status["phase"] == "Paused" and dec.status["currentStep"] == 0
    p["status"] = dec.status
    p["metadata"]["annotations"] = {kubeling_kinds.PROMOTE_ANNOTATION: "other/0"}
    assert decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW).status["currentStep"] == 0
    p["metadata"]["annotations"] = {kubeling_kinds.PROMOTE_ANNOTATION: "new/0"}
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW)
    assert dec.status["currentStep"] == 1 and dec.status["phase"] == "Progressing"


def test_timed_pause_requeues_then_advances():
    p = plan(_rolling(), steps=[{"nodes": "20%", "pause": {"duration": "30s"}}, {"nodes": "100%"}])
    pods = _pods({"n1", "n2"})
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW)
    assert dec.status["phase"] == "Paused" and 29 < dec.requeue_after <= 30
    p["status"] = dec.status
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW + 31)
    assert dec.status["currentStep"] == 1


def test_last_step_complete_makes_revision_stable():
    p = plan(_rolling(step=2))
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods({n["metadata"]["name"] for n in NODES})),
                 now=NOW)
    assert dec.status["phase"] == "Succeeded" and dec.status["stableRevision"] == "new"


def test_failures_beyond_max_failed_roll_back():
    p = plan(_rolling(step=1), failurePolicy={"maxFailedNodes": 1})
    one_bad = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods({"n1", "n2"}, bad={"n2"})), now=NOW)
    assert one_bad.rollback is None and one_bad.status["failedNodes"][0]["reason"] == "ImagePullBackOff"
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods({"n1", "n2"}, bad={"n1", "n2"})), now=NOW)
    assert dec.status["phase"] == "RolledBack" and "FailureThresholdExceeded" in dec.rollback


def test_pause_action_freezes_as_failed():
    p = plan(_rolling(step=1), failurePolicy={"action": "Pause"})
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods({"n1"}, bad={"n1"})), now=NOW)
    assert dec.rollback is None and dec.status["phase"] == "Failed"
    assert steps.frozen({**p, "status": dec.status})


def test_stalled_step_fails_after_deadline():
    p = plan(_rolling(step=1, updatedNodes=1, availableUpdatedNodes=1),
             failurePolicy={"progressDeadlineSeconds": 60, "action": "Pause"})
    pods = _pods({"n1"})
    assert decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW + 30).status["phase"] == \
        "Progressing"
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, pods), now=NOW + 61)
    assert dec.status["phase"] == "Failed" and "no progress" in dec.status["message"]


def test_abort_rolls_back_and_stale_view_does_not_restart():
    p = plan(_rolling())
    p["metadata"]["annotations"] = {kubeling_kinds.ABORT_ANNOTATION: "new"}
    dec = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods(set())), now=NOW)
    assert dec.rollback and dec.status["phase"] == "RolledBack"
    p["status"] = {**dec.status, "rollbackGeneration": 4}
    again = decide(p, update_hash="new", ds_generation=3, obs=_obs(p, _pods(set())), now=NOW)
    assert again.status["phase"] == "RolledBack" and again.rollback is None
    done = decide(p, update_hash="old", ds_generation=4, obs=_obs(p, _pods(set()), hash_="old"), now=NOW)
    assert done.status["phase"] == "RolledBack"


def test_why_reasons():
    d = ds()
    d["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    nodes = [node("a", {"disk": "ssd"}), node("b"), node("c", {"disk": "ssd"}, [{"key": "k", "value": "v",
                                                                                "effect": "NoSchedule"}]),
             node("d", {"disk": "ssd"}), node("e", {"disk": "ssd"})]
    p = plan(_rolling())
    pods = [pod("pa", "a", "new", ready=False, waiting="CrashLoopBackOff"), pod("pd", "d", "old"),
            pod("pe", "e", "old")]
    reasons = {r.node: r.reason for r in observe(p, d, nodes, pods, hash_="new", now=NOW).reasons}
    assert reasons == {"a": "CrashLoopBackOff", "b": "NodeSelectorMismatch", "c": "UntoleratedTaint",
                       "d": HELD_BACK, "e": HELD_BACK}


# ---- the DaemonSet seam ----------------------------------------------------------------------------

def test_holdback_and_rolling_update_respect_the_step():
    d = ds("a:v2", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 10}})
    p = plan(_rolling())
    by_node = {n["metadata"]["name"]: [pod(f"p{n['metadata']['name']}", n["metadata"]["name"], "old")]
               for n in NODES}
    rev = {"metadata": {"name": "agent-old", "labels": {"controller-revision-hash": "old"}},
           "data": {"spec": {"template": {"metadata": {"creationTimestamp": None}, "$patch": "replace",
                                          "spec": {"containers": [{"name": "a", "image": "a:v1"}]}}}}}
    hold = holdback.compute(d, [p], NODES, by_node, hash_="new", revisions=[rev])
    assert hold.allowed == {"n1", "n2"} and hold.stable_template["spec"]["containers"][0]["image"] == "a:v1"
    assert "$patch" not in hold.stable_template
    actions = rolling_update(d, NODES, by_node, hash_="new", now=NOW, allowed=hold.allowed)
    assert sorted(actions.delete_pods) == ["pn1", "pn2"]
    assert holdback.compute(d, [], NODES, by_node, hash_="new", revisions=[rev]) is None


# ---- the API kind ------------------------------------------------------------------------------------

def test_kind_is_served_validated_and_printed():
    res = get_catalogue().resolve("rp")
    assert res is not None and res.kind == "RolloutPlan" and "status" in res.subresources
    p = plan()
    assert p["spec"]["failurePolicy"] == {"maxFailedNodes": 0, "progressDeadlineSeconds": 600, "action": "Rollback"}
    unknown, _ = schema.validate(res, {**p, "spec": {**p["spec"], "bogus": 1}})
    assert [e.field for e in unknown] == ["spec.bogus"]
    bad = plan(failurePolicy={"action": "Explode"}, steps=[{"nodes": "150%"}])
    errs = strategy_for(res).validate(bad)
    assert {e.field for e in errs} == {"spec.failurePolicy.action", "spec.steps[0].nodes"}
    assert strategy_for(res).uses_generation
    table = to_table(res, [{**p, "status": {"phase": "Paused", "currentStep": 0, "updatedNodes": 2,
                                            "eligibleNodes": 10}}])
    assert [c["name"] for c in table["columnDefinitions"]][:6] == ["Name", "Target", "Phase", "Step", "Updated",
                                                                   "Available"]
    assert table["rows"][0]["cells"][1:5] == ["DaemonSet/agent", "Paused", "1/3", "2/10"]


def test_template_back_on_stable_mid_rollout_is_rolled_back_until_a_new_revision():
    # the RolledBack write after our own rollback was lost (conflict): the next sync sees the plan as
    # it was (Progressing on "new") and the template already back on the stable revision "old"
    p = plan(_rolling(step=1))
    dec = decide(p, update_hash="old", ds_generation=4, obs=_obs(p, _pods(set()), hash_="old"), now=NOW)
    assert dec.status["phase"] == "RolledBack" and dec.rollback is None
    assert dec.status["stableRevision"] == "old" and dec.status["updateRevision"] == "new"
    assert [e[1] for e in dec.events] == ["RolledBack"]
    assert steps.allowed_update_nodes({**p, "status": dec.status}, hash_="old", order=["n1"], canaries=0,
                                      updated=set()) is None
    # level-triggered: later syncs on the stable template keep RolledBack and say nothing more
    p["status"] = dec.status
    again = decide(p, update_hash="old", ds_generation=4, obs=_obs(p, _pods(set()), hash_="old"), now=NOW + 5)
    assert again.status["phase"] == "RolledBack" and not again.events
    # a finished rollout on the stable template stays Succeeded
    done = plan({"stableRevision": "old", "updateRevision": "old", "phase": "Succeeded", "currentStep": 2})
    assert decide(done, update_hash="old", ds_generation=4, obs=_obs(done, _pods(set()), hash_="old"),
                  now=NOW).status["phase"] == "Succeeded"
    # the template changing to a new revision starts over
    nxt = decide(p, update_hash="newer", ds_generation=5, obs=_obs(p, _pods(set()), hash_="newer"), now=NOW + 9)
    assert nxt.status["phase"] == "Progressing" and nxt.status["updateRevision"] == "newer"
    assert nxt.status["currentStep"] == 0
