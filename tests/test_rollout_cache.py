"""What RolloutPlans remember between syncs (node order, pod view) answers as a fresh computation.

Each test walks a fleet through many changes, as an informer shows them (a changed object is a new
dict with a new resourceVersion): canary labels added and removed, zones changed, nodes tainted,
added, removed and listed in another order, pods updated, failing, deleted and added, the plan's
and the DaemonSet's fields changed. After every change the remembered answers must equal those
computed from scratch, the way they were computed before anything was remembered.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

import pytest

from kubeling.api import kubeling_kinds
from kubeling.api.defaults import apply_defaults
from kubeling.api.scheduling import label_selector_is_empty, label_selector_matches
from kubeling.client.informer import object_key
from kubeling.controllers.daemonset import holdback
from kubeling.controllers.daemonset.placement import node_should_run_daemon_pod, placements
from kubeling.controllers.rollout import nodeorder, podview, steps
from kubeling.controllers.rollout.observe import AVAILABLE, HELD_BACK, NodeReason, Observation, observe
from kubeling.controllers.rollout.reconcile import WHY_LIMIT, decide

Obj = dict[str, Any]
NOW = 1_700_000_000.0
OLD_TS, NEW_TS, READY_TS = "2023-11-14T20:00:00Z", "2023-11-14T22:13:00Z", "2023-11-14T22:13:10Z"
ZONE = "topology.kubernetes.io/zone"
_rv = itertools.count(1)


def _bump(obj: Obj) -> Obj:
    """A new version of ``obj``, as an informer would hold it."""
    new = copy.deepcopy(obj)
    new["metadata"]["resourceVersion"] = str(next(_rv))
    return new


def _node(name: str, rng: random.Random) -> Obj:
    labels = {"kubernetes.io/hostname": name}
    if rng.random() < 0.8:
        labels[ZONE] = rng.choice(["z-a", "z-b", "z-c"])
    if rng.random() < 0.1:
        labels["canary"] = "true"
    if rng.random() < 0.3:
        labels["tier"] = rng.choice(["edge", "core"])
    return {"metadata": {"name": name, "uid": f"uid-{name}-{next(_rv)}", "resourceVersion": str(next(_rv)),
                         "labels": labels}, "spec": {}}


def _fleet(rng: random.Random, count: int) -> list[Obj]:
    names = [f"node-{i}" for i in range(count)] + ["node-01", "node-001", "n2", "node-b"]  # natural-order ties
    return [_node(n, rng) for n in names]


def _ds(**spec: Any) -> Obj:
    ds = {"metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "resourceVersion": "1",
                       "generation": 2},
          "spec": {"selector": {"matchLabels": {"app": "a"}},
                   "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}},
                   "template": {"metadata": {"labels": {"app": "a"}},
                                "spec": {"containers": [{"name": "a", "image": "a:v2"}]}}}}
    ds["spec"].update(spec)
    return ds


def _plan(status: Obj | None = None, **spec: Any) -> Obj:
    body = {"targetRef": {"kind": "DaemonSet", "name": "agent"},
            "steps": [{"nodes": "20%"}, {"nodes": "60%"}, {"nodes": "100%"}], **spec}
    p = {"metadata": {"name": "p", "namespace": "default", "generation": 1}, "spec": body,
         "status": status or {"stableRevision": "old", "updateRevision": "new", "currentStep": 1,
                              "phase": "Progressing"}}
    apply_defaults(kubeling_kinds.rollout_plan_resource(), p)
    return p


PLAN_SPECS: list[Obj] = [
    {"topologyKey": ZONE, "canaryNodes": {"matchLabels": {"canary": "true"}}},
    {"topologyKey": ZONE},
    {"canaryNodes": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]}},
    {"topologyKey": "tier", "canaryNodes": {}},
    {},
]


# ---- the order as it was computed before it was remembered ------------------------------------------

def reference_order(plan: Obj, ds: Obj, nodes: list[Obj]) -> tuple[list[str], int]:
    eligible = [n for n in nodes if node_should_run_daemon_pod(n, ds)[0]]
    ordered = sorted(eligible, key=lambda n: steps.natural_key(n["metadata"]["name"]))
    selector = plan["spec"].get("canaryNodes")
    has_canaries = not label_selector_is_empty(selector)
    flags = [has_canaries and label_selector_matches(selector, n["metadata"].get("labels")) for n in ordered]
    canary = [n["metadata"]["name"] for n, c in zip(ordered, flags, strict=True) if c]
    rest = [n for n, c in zip(ordered, flags, strict=True) if not c]
    key = plan["spec"].get("topologyKey")
    if not key:
        return canary + [n["metadata"]["name"] for n in rest], len(canary)
    groups: dict[str, list[str]] = {}
    for n in rest:
        value = n["metadata"].get("labels", {}).get(key)
        groups.setdefault("\x00" if value is None else value, []).append(n["metadata"]["name"])
    values = sorted(groups, key=lambda v: (v == "\x00", v))
    spread = [groups[v][i] for i in range(max((len(g) for g in groups.values()), default=0))
              for v in values if i < len(groups[v])]
    return canary + spread, len(canary)


def reference_holdback(ds: Obj, plan: Obj, nodes: list[Obj], by_node: dict[str, list[Obj]],
                       hash_: str) -> frozenset[str] | None:
    order, canaries = reference_order(plan, ds, nodes)
    updated = {n for n, pods in by_node.items()
               if any(not p["metadata"].get("deletionTimestamp")
                      and p["metadata"]["labels"].get("controller-revision-hash") == hash_ for p in pods)}
    allowed = steps.allowed_update_nodes(plan, hash_=hash_, order=order, canaries=canaries, updated=updated)
    return None if allowed is None else frozenset(allowed)


def reference_observe(plan: Obj, ds: Obj, nodes: list[Obj], pods: list[Obj], *, hash_: str, now: float) -> Observation:
    """observe() as it was: every node and pod looked at afresh."""
    from kubeling.controllers.daemonset.rolling import max_unavailable_count, scaled_value
    from kubeling.controllers.rollout.observe import _step_text, placement_reason

    spec = plan.get("spec") or {}
    deadline = float((spec.get("failurePolicy") or {}).get("progressDeadlineSeconds") or 600)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    by_node: dict[str, list[podview.PodFacts]] = {}
    for pod in pods:
        facts = podview.facts_of(pod)
        if facts.node is not None and not facts.deleting:
            by_node.setdefault(facts.node, []).append(facts)
    order, canaries = reference_order(plan, ds, nodes)
    obs = Observation(order=order, canaries=canaries)
    current: dict[str, podview.PodFacts] = {}
    for name, node_pods in by_node.items():
        new = [p for p in node_pods if p.hash == hash_]
        current[name] = min(new or node_pods, key=lambda f: f.oldest_key)
        if new:
            obs.updated.add(name)
    eligible = set(order)
    obs.updated &= eligible
    obs.allowed = steps.allowed_update_nodes(plan, hash_=hash_, order=order, canaries=canaries, updated=obs.updated)
    unavailable = sum(1 for n in order if n not in current or not current[n].available(min_ready, now))
    limit = max_unavailable_count(ds, len(order))
    if spec.get("maxUnavailable") is not None:
        limit = scaled_value(spec["maxUnavailable"], len(order), round_up=True)
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        facts = current.get(name)
        if name not in eligible:
            why = placement_reason(node, ds) or ("NotEligible", "the daemon pod should not run on this node")
            obs.reasons.append(NodeReason(name, why[0], why[1], eligible=False))
            continue
        if facts is None:
            obs.reasons.append(NodeReason(name, "NoPod", "no daemon pod yet: the DaemonSet controller creates one"))
            continue
        available = facts.available(min_ready, now)
        if name in obs.updated:
            if available:
                obs.available_updated.add(name)
                if facts.ready_since is not None and facts.created is not None:
                    obs.start_seconds.append(max(facts.ready_since - facts.created, 0.0))
            elif facts.problem is not None and facts.problem[0] in steps.FAILURE_REASONS + ("Failed",):
                obs.failed[name] = facts.problem
            elif facts.created is not None and now - facts.created > deadline:
                obs.failed[name] = ("ProgressDeadlineExceeded", f"pod {facts.name} not available after {int(deadline)}s")
        if facts.problem is not None:
            obs.reasons.append(NodeReason(name, facts.problem[0], f"pod {facts.name}: {facts.problem[1]}"))
        elif not available:
            obs.reasons.append(NodeReason(name, "NotReady", f"pod {facts.name} is not ready yet"))
        elif name in obs.updated:
            obs.reasons.append(NodeReason(name, AVAILABLE, "runs the update revision and is available"))
        elif obs.allowed is not None and name not in obs.allowed:
            obs.reasons.append(NodeReason(name, HELD_BACK, f"held back by RolloutPlan p at {_step_text(plan, obs)}"))
        elif unavailable >= max(limit, 1):
            obs.reasons.append(NodeReason(name, "WaitingOnMaxUnavailable", f"waiting on maxUnavailable ({limit}): "
                                          f"{unavailable} daemon pod(s) unavailable"))
        else:
            obs.reasons.append(NodeReason(name, "Pending", "old revision, next in line for the update"))
    return obs


# ---- changes, as an informer shows them -------------------------------------------------------------

def _change_node(nodes: list[Obj], rng: random.Random) -> None:
    i = rng.randrange(len(nodes))
    node = _bump(nodes[i])
    labels = node["metadata"]["labels"]
    what = rng.choice(["canary", "zone", "unzone", "taint", "tier", "status"])
    if what == "canary":
        if labels.pop("canary", None) is None:
            labels["canary"] = "true"
    elif what == "zone":
        labels[ZONE] = rng.choice(["z-a", "z-b", "z-c", "z-d"])
    elif what == "unzone":
        labels.pop(ZONE, None)
    elif what == "taint":
        taints = node["spec"].get("taints")
        node["spec"]["taints"] = None if taints else [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    elif what == "tier":
        labels["tier"] = rng.choice(["edge", "core"])
    else:  # a status report: a new version the order does not read
        node["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": str(next(_rv))}]}
    nodes[i] = node


def _change_fleet(nodes: list[Obj], rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.1:
        nodes.append(_node(f"node-{next(_rv)}x", rng))  # names are unique, as in an informer
    elif roll < 0.2 and len(nodes) > 5:
        del nodes[rng.randrange(len(nodes))]
    elif roll < 0.25:
        rng.shuffle(nodes)
    else:
        for _ in range(rng.randint(1, 3)):
            _change_node(nodes, rng)


def _pod(name: str, node: str, hash_: str, rng: random.Random) -> Obj:
    status: Obj = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if rng.random() < 0.8 else "False", "lastTransitionTime": READY_TS}]}
    if rng.random() < 0.05:
        status["containerStatuses"] = [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                           "message": "boom"}}}]
    return {"metadata": {"name": name, "namespace": "default", "uid": f"pod-{name}-{next(_rv)}",
                         "resourceVersion": str(next(_rv)), "creationTimestamp": rng.choice([OLD_TS, NEW_TS]),
                         "labels": {"app": "a", "controller-revision-hash": hash_},
                         "ownerReferences": [{"kind": "DaemonSet", "name": "agent", "uid": "ds-uid",
                                              "controller": True}]},
            "spec": {"nodeName": node}, "status": status}


def _pods(nodes: list[Obj], rng: random.Random) -> list[Obj]:
    pods = []
    for i, n in enumerate(nodes):
        if rng.random() < 0.9:
            pods.append(_pod(f"agent-{i}", n["metadata"]["name"], rng.choice(["old", "new"]), rng))
    return pods


def _change_pods(pods: list[Obj], nodes: list[Obj], rng: random.Random) -> None:
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.2 or not pods:
            node = rng.choice(nodes)["metadata"]["name"]
            pods.insert(rng.randrange(len(pods) + 1), _pod(f"agent-{next(_rv)}", node, rng.choice(["old", "new"]), rng))
            continue
        i = rng.randrange(len(pods))
        if roll < 0.35:
            del pods[i]
            continue
        pod = _bump(pods[i])
        if roll < 0.5:
            pod["metadata"]["deletionTimestamp"] = NEW_TS
        elif roll < 0.7:
            pod["metadata"]["labels"]["controller-revision-hash"] = rng.choice(["old", "new"])
        elif roll < 0.85:
            cond = pod["status"]["conditions"][0]
            cond["status"] = "False" if cond["status"] == "True" else "True"
        else:
            pod["status"]["containerStatuses"] = [{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
        pods[i] = pod
    if rng.random() < 0.1:
        rng.shuffle(pods)


def _by_node(pods: list[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for p in pods:
        out.setdefault(p["spec"]["nodeName"], []).append(p)
    return out


STATUSES: list[Obj] = [
    {"stableRevision": "old", "updateRevision": "new", "currentStep": 0, "phase": "Progressing"},
    {"stableRevision": "old", "updateRevision": "new", "currentStep": 1, "phase": "Progressing"},
    {"stableRevision": "old", "updateRevision": "new", "currentStep": 1, "phase": "Failed"},
    {"stableRevision": "old", "updateRevision": "new", "currentStep": 2, "phase": "Succeeded"},
    {"stableRevision": "old", "updateRevision": "new", "currentStep": 0, "phase": "RolledBack"},
    {"stableRevision": "old", "updateRevision": "older", "currentStep": 0, "phase": "Progressing"},
    {"stableRevision": "new", "updateRevision": "new", "currentStep": 2, "phase": "Succeeded"},
]


@pytest.mark.parametrize("seed", range(4))
def test_remembered_order_and_holdback_follow_every_change(seed: int) -> None:
    rng = random.Random(seed)
    nodes = _fleet(rng, 40)
    pods = _pods(nodes, rng)
    ds = _ds()
    spec = PLAN_SPECS[seed % len(PLAN_SPECS)]
    for step in range(150):
        if step % 25 == 24:
            spec = rng.choice(PLAN_SPECS)  # the plan's order fields change
        if step % 40 == 39:  # the DaemonSet's placement fields change: another table
            ds = _bump(ds)
            template_spec = ds["spec"]["template"]["spec"]
            if template_spec.pop("nodeSelector", None) is None:
                template_spec["nodeSelector"] = {"tier": "edge"}
        _change_fleet(nodes, rng)
        _change_pods(pods, nodes, rng)
        status = STATUSES[step % len(STATUSES)]
        plan = _plan(dict(status), paused=step % 11 == 0, **spec)
        want_order, want_canaries = reference_order(plan, ds, nodes)
        for known in (None, placements(ds, nodes)):
            got = nodeorder.eligible_in_order(plan, ds, nodes, placements=known)
            assert (got.order, got.canaries) == (want_order, want_canaries), step
            assert got.eligible == set(want_order)
            assert got.names == sorted(n["metadata"]["name"] for n in nodes)
        by_node = _by_node(pods)
        hold = holdback.compute(ds, [plan], nodes, by_node, hash_="new", revisions=[],
                                placements=placements(ds, nodes))
        want = reference_holdback(ds, plan, nodes, by_node, "new")
        assert (None if hold is None else hold.allowed) == want, step


def test_order_of_unstored_objects_is_not_remembered() -> None:
    """Objects without uid and resourceVersion (a test's, a file's) may change in place."""
    rng = random.Random(7)
    nodes = _fleet(rng, 10)
    for n in nodes:
        del n["metadata"]["uid"]
    plan = _plan(**PLAN_SPECS[0])
    ds = _ds()
    for _ in range(20):
        node = rng.choice(nodes)
        labels = node["metadata"]["labels"]
        if labels.pop("canary", None) is None:
            labels["canary"] = "true"
        labels[ZONE] = rng.choice(["z-a", "z-b"])
        got = nodeorder.eligible_in_order(plan, ds, nodes)
        assert (got.order, got.canaries) == reference_order(plan, ds, nodes)


@pytest.mark.parametrize("min_ready", [0, 30])
def test_remembered_pods_and_order_observe_as_a_fresh_pass(min_ready: int) -> None:
    rng = random.Random(min_ready)
    nodes = _fleet(rng, 60)
    pods = _pods(nodes, rng)
    ds = _ds(minReadySeconds=min_ready)
    followed = _Followed(pods, "new")
    for step in range(150):
        _change_fleet(nodes, rng)
        _change_pods(pods, nodes, rng)
        status = dict(STATUSES[step % 3], stepStartTime=NEW_TS, lastProgressTime=NEW_TS)
        plan = _plan(status, **PLAN_SPECS[step % len(PLAN_SPECS)])
        now = NOW + rng.choice([0, 900])  # past the progress deadline, sometimes
        want = reference_observe(plan, ds, nodes, pods, hash_="new", now=now)
        got = observe(plan, ds, nodes, pods, hash_="new", now=now)
        assert got == want, step
        brief = observe(plan, ds, nodes, followed.follow(pods), hash_="new", now=now, why_limit=WHY_LIMIT,
                        start_times=False)
        problems = [r for r in want.reasons if r.eligible and r.reason != AVAILABLE][:WHY_LIMIT]
        assert brief.reasons == problems
        assert (brief.order, brief.updated, brief.available_updated, brief.failed, brief.allowed, brief.canaries) == (
            want.order, want.updated, want.available_updated, want.failed, want.allowed, want.canaries)
        decided = decide(plan, update_hash="new", ds_generation=2, obs=brief, now=now)
        expected = decide(plan, update_hash="new", ds_generation=2, obs=want, now=now)
        assert (decided.status, decided.events, decided.rollback) == (expected.status, expected.events,
                                                                      expected.rollback)


class _Followed:
    """A PodView kept up to date as the plan controller keeps it: told of each pod that changed."""

    def __init__(self, pods: list[Obj], hash_: str) -> None:
        self.view = podview.PodView.of(pods, hash_)
        self.seen = {object_key(p): p for p in pods}

    def follow(self, pods: list[Obj]) -> podview.PodView:
        now = {object_key(p): p for p in pods}
        for key in self.seen.keys() | now.keys():
            if self.seen.get(key) is not now.get(key):
                self.view.put(key, now.get(key))
        self.seen = now
        return self.view


def test_pod_view_follows_pods_moving_between_nodes_and_revisions() -> None:
    rng = random.Random(3)
    nodes = _fleet(rng, 20)
    pods = _pods(nodes, rng)
    followed = {h: _Followed(pods, h) for h in ("new", "old")}
    for _ in range(200):
        _change_pods(pods, nodes, rng)
        if rng.random() < 0.2:  # a pod moves: a new object on another node
            i = rng.randrange(len(pods))
            pod = _bump(pods[i])
            pod["spec"]["nodeName"] = rng.choice(nodes)["metadata"]["name"]
            pods[i] = pod
        for hash_, f in followed.items():
            kept, fresh = f.follow(pods), podview.PodView.of(pods, hash_)
            assert kept.current == fresh.current
            assert (kept.updated, kept.ready) == (fresh.updated, fresh.ready)
            assert {n: set(map(id, ps)) for n, ps in kept.by_node.items()} == {
                n: set(map(id, ps)) for n, ps in fresh.by_node.items()}
