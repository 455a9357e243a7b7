"""The fleet's memoized work: parsed annotations, node IPs and CIDR indexes keyed by what they are made
of, and the echo of a pod status write recognised without computing the status again.

Every cache must answer as if nothing were cached: a changed annotation, label or podCIDR is seen at
once, and a pod whose status someone else wrote (or whose node changed) is computed as usual.
"""

from __future__ import annotations

import asyncio
import copy
import random
import socket
from pathlib import Path
from typing import Any

from kubeling.cli import runtime
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.nodes import faults, stages
from kubeling.nodes.fleet import NodeFleet
from kubeling.nodes.stages import POD_STAGES, Ctx, plan

T0 = 1_700_000_000.37  # not a whole second: the first post's start is the clock, its startTime whole seconds


def node(name: str = "node-1", *, annotations: dict | None = None, cidr: str | None = "10.244.1.0/24") -> dict:
    n: dict = {"metadata": {"name": name, "uid": f"{name}-uid", "annotations": dict(annotations or {})},
               "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    return n


def pod(*images: str, annotations: dict | None = None, init: tuple[str, ...] = (), policy: str = "Always") -> dict:
    p: dict = {"metadata": {"name": "web", "namespace": "default", "uid": "pod-uid", "resourceVersion": "1",
                            "annotations": dict(annotations or {})},
               "spec": {"nodeName": "node-1", "restartPolicy": policy,
                        "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}
    if init:
        p["spec"]["initContainers"] = [{"name": f"init{i}", "image": im} for i, im in enumerate(init)]
    return p


# -- caches keyed by what they are made of ---------------------------------------------------------

def test_node_ip_and_cidr_index_follow_the_pod_cidr() -> None:
    n = node(cidr="10.244.1.0/24")
    assert stages.node_ip(n) == "10.0.0.3"
    n["spec"]["podCIDR"] = "10.244.7.0/24"
    assert stages.node_ip(n) == "10.0.0.9" and stages.index_of_pod_cidr("10.244.7.0/24") == 7
    del n["spec"]["podCIDR"]
    by_name = stages.node_ip(n)
    assert by_name == stages.node_ip(node(cidr=None)) and by_name != "10.0.0.9"
    n["metadata"]["name"] = "node-2"
    assert stages.node_ip(n) != by_name  # the fallback is the name's
    assert stages.index_of_pod_cidr("10.9.1.0/24") is None and stages.index_of_pod_cidr(None) is None


def test_parsed_annotations_follow_the_annotation() -> None:
    n = node(annotations={faults.SIMULATE: "not-ready"})
    assert faults.node_simulations(n) == {"not-ready"}
    n["metadata"]["annotations"][faults.SIMULATE] = "memory-pressure, unreachable"
    assert faults.node_simulations(n) == {"memory-pressure", "unreachable"}
    del n["metadata"]["annotations"][faults.SIMULATE]
    assert faults.node_simulations(n) == set()
    n["metadata"]["annotations"][faults.FAIL_IMAGES] = "nginx:*"
    assert faults.fail_images(n, ("x",)) == ["nginx:*"]
    got = faults.fail_images(n)
    got.append("mine")  # callers own what they get
    assert faults.fail_images(n) == ["nginx:*"]
    n["metadata"]["annotations"][faults.FAIL_IMAGES] = ""
    assert faults.fail_images(n, ("x",)) == []
    del n["metadata"]["annotations"][faults.FAIL_IMAGES]
    assert faults.fail_images(n, ("x",)) == ["x"]
    assert faults.parse_duration("1m30s") == 90 and faults.parse_duration(" 2s ") == 2
    assert faults.parse_duration(5) == 5


def test_fault_annotations_changed_on_the_node_change_the_pod() -> None:
    n = node()
    p = pod("nginx:1.25")
    st = plan(POD_STAGES, p, Ctx(now=T0, node=n, fast_start=True)).effect.status
    assert st["containerStatuses"][0]["state"].keys() == {"running"}
    n["metadata"]["annotations"][faults.CRASH_IMAGES] = "nginx*"
    st = plan(POD_STAGES, p, Ctx(now=T0, node=n, fast_start=True)).effect.status
    assert st["containerStatuses"][0]["state"].keys() == {"terminated"}
    n["metadata"]["annotations"][faults.CRASH_IMAGES] = "redis"
    n["metadata"]["annotations"][faults.FAIL_IMAGES] = "docker.io/library/nginx:*"
    st = plan(POD_STAGES, p, Ctx(now=T0, node=n, fast_start=True)).effect.status
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"


def test_node_status_follows_labels_annotations_and_cidr() -> None:
    n = node()
    n["status"] = plan(stages.NODE_STAGES, n, Ctx(now=T0, node=n)).effect.status
    assert plan(stages.NODE_STAGES, n, Ctx(now=T0 + 1, node=n)).stage == "node-heartbeat"
    n["spec"]["podCIDR"] = "10.244.9.0/24"
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 2, node=n))
    assert pl.stage == "node-status-changed"
    assert pl.effect.status["addresses"][0]["address"] == "10.0.0.11"
    n["status"] = pl.effect.status
    n["metadata"]["annotations"]["kubeling.io/capacity-pods"] = "250"
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 3, node=n))
    assert pl.stage == "node-status-changed" and pl.effect.status["capacity"]["pods"] == "250"
    n["status"] = pl.effect.status
    n["metadata"]["annotations"][faults.SIMULATE] = "disk-pressure"
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 4, node=n))
    assert pl.stage == "node-status-changed"
    assert {c["type"]: c["status"] for c in pl.effect.status["conditions"]}["DiskPressure"] == "True"
    n["metadata"]["labels"] = {"kubernetes.io/hostname": "node-1"}
    assert set(stages.node_metadata_patch(n, cidr_index=None)["metadata"]["labels"]) == {
        "kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"}
    n["metadata"]["labels"].update(stages.node_metadata_patch(n, cidr_index=None)["metadata"]["labels"])
    assert stages.node_metadata_patch(n, cidr_index=None) is None


# -- the echo of a status write ---------------------------------------------------------------------

def _apply(p: dict, status: dict, rv: int) -> dict:
    """The API server's answer to a strategic merge of ``status`` (conditions merged by type)."""
    out = copy.deepcopy(p)
    old = {c["type"]: c for c in (out.get("status") or {}).get("conditions") or []}
    for c in status.get("conditions") or []:
        merged = {**old.get(c["type"], {}), **c}
        old[c["type"]] = {k: v for k, v in merged.items() if v is not None}
    out["status"] = {**(out.get("status") or {}), **{k: v for k, v in status.items() if k != "conditions"},
                     "conditions": list(old.values())}
    out["metadata"]["resourceVersion"] = str(rv)
    return out


def _random_pod(rng: random.Random) -> dict:
    images = ["nginx:1.25", "busybox:1", "app:broken", "app:crash", "redis"]
    ann = {}
    if rng.random() < 0.3:
        ann["kubeling.io/ready-after"] = rng.choice(["0.2s", "3s", "0"])
    p = pod(*[rng.choice(images) for _ in range(rng.randint(1, 2))], annotations=ann,
            init=tuple(rng.choice(images) for _ in range(rng.choice([0, 0, 1]))),
            policy=rng.choice(["Always", "Never"]))
    if rng.random() < 0.2:
        p["spec"]["readinessGates"] = [{"conditionType": "example.com/gate"}]
    return p


def _someone_else(rng: random.Random, p: dict, n: dict) -> str:
    """Another writer's change to the pod or its node (or none)."""
    what = rng.choice(["none", "none", "gate", "annotation", "image", "delete", "status", "node", "cidr"])
    if what == "gate":
        p.setdefault("status", {}).setdefault("conditions", []).append(
            {"type": "example.com/gate", "status": rng.choice(["True", "False"])})
    elif what == "annotation":
        p["metadata"]["annotations"]["kubeling.io/ready-after"] = "10s"
    elif what == "image":
        p["spec"]["containers"][0]["image"] = "app:crash"
    elif what == "delete":
        p["metadata"]["deletionTimestamp"] = "2023-11-14T22:14:00Z"
    elif what == "status":
        p["status"]["phase"] = "Pending"
    elif what == "node":
        n["metadata"]["annotations"][faults.FAIL_IMAGES] = "nginx*"
    elif what == "cidr":
        n["spec"]["podCIDR"] = "10.244.3.0/24"
    return what


def test_echo_plan_agrees_with_plan() -> None:
    """Wherever echo_plan answers, plan() computing the whole status answers the same."""
    rng = random.Random(1)
    answered = computed = 0
    for _ in range(300):
        n = node(annotations={"kubeling.io/pull-delay": "1s"} if rng.random() < 0.2 else None)
        p = _random_pod(rng)
        t = T0 + rng.random()
        rv = 1
        for _ in range(6):
            ctx = Ctx(now=t, node=n, pod_ip="10.244.1.5", fast_start=True)
            pl = plan(POD_STAGES, p, ctx)
            if pl.effect is None or not pl.effect.status:
                t += (pl.wait or 5.0) + 0.001
                continue
            rv += 1
            answer = _apply(p, pl.effect.status, rv)
            w = stages.written_status(p, ctx, answer)
            for _ in range(4):
                echo, n2 = copy.deepcopy(answer), copy.deepcopy(n)
                # (a change under the written resourceVersion too: the inputs are compared, not trusted)
                changed = _someone_else(rng, echo, n2)
                if changed not in ("none", "node", "cidr") and rng.random() < 0.5:
                    echo["metadata"]["resourceVersion"] = str(rv + 1)  # their write, after ours
                later = t + rng.choice([0.0, 0.001, 0.5, 2.0, 12.0, 400.0])
                ctx2 = Ctx(now=later, node=n2, pod_ip="10.244.1.5", fast_start=True)
                want = plan(POD_STAGES, echo, Ctx(now=later, node=n2, pod_ip="10.244.1.5", fast_start=True))
                got = None if w is None else stages.echo_plan(w, echo, ctx2)
                if got is None:
                    computed += 1
                    continue
                answered += 1
                assert want.effect is not None and not want.effect.status and not want.effect.delete
                assert got.effect == stages.Effect() and got.wait == want.wait
            p = answer
            t += 0.3
    assert answered > 100 and computed > 100


def test_echo_is_the_written_revision_only() -> None:
    n = node()
    p = pod("nginx:1.25")
    ctx = Ctx(now=T0, node=n, pod_ip="10.244.1.2", fast_start=True)
    pl = plan(POD_STAGES, p, ctx)
    answer = _apply(p, pl.effect.status, 2)
    w = stages.written_status(p, ctx, answer)
    assert w is not None

    def echo(obj: dict, node_obj: dict = n, now: float = T0 + 1) -> stages.Plan | None:
        return stages.echo_plan(w, obj, Ctx(now=now, node=node_obj, pod_ip="10.244.1.2", fast_start=True))

    assert echo(copy.deepcopy(answer)) == stages.Plan("pod-run", stages.Effect(), None)
    other = copy.deepcopy(answer)
    other["metadata"]["resourceVersion"] = "3"
    assert echo(other) is None  # someone else's revision: computed
    assert echo(copy.deepcopy(answer), now=T0 - 5) is None  # the clock went back
    assert echo(copy.deepcopy(answer), node_obj=node(annotations={faults.CRASH_IMAGES: "nginx*"})) is None
    assert echo(copy.deepcopy(answer), node_obj=node(cidr="10.244.2.0/24")) is None
    # a first post with a pull delay is not reused: its start came from the clock
    slow = node(annotations={"kubeling.io/pull-delay": "2s"})
    ctx = Ctx(now=T0, node=slow, pod_ip="10.244.1.2", fast_start=True)
    pl = plan(POD_STAGES, p, ctx)
    assert stages.written_status(p, ctx, _apply(p, pl.effect.status, 2)) is None


# -- the fleet against an API server ----------------------------------------------------------------

class CountingClient(Client):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.patches = 0

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        if method == "PATCH" and path.endswith("/status") and "/pods/" in path:
            self.patches += 1
        return await super().request(method, path, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fleet_skips_only_its_own_echo(tmp_path: Path) -> None:
    """The fleet's own write coming back costs no status computation and no write; someone else's
    write, a changed node and a restarted fleet are all computed (level-triggered)."""

    async def main() -> None:
        data = tmp_path / "data"
        api = await runtime.start_apiserver(data_dir=data, port=_free_port(), store_url="sqlite://")
        client = CountingClient(runtime.client_config(data / "kubeconfig"), loopback=api.loopback())
        other = Client(runtime.client_config(data / "kubeconfig"), loopback=api.loopback())
        try:
            await scenario(client, other)
        finally:
            await client.close()
            await other.close()
            await api.stop()

    def new_fleet(client: Client) -> NodeFleet:
        return NodeFleet(client, InformerFactory(client))  # informers fed by hand: events in a known order

    async def scenario(client: CountingClient, other: Client) -> None:
        await client.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                                      "spec": {"podCIDR": "10.244.1.0/24"}})
        await client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                                     "spec": {"nodeName": "node-1", "automountServiceAccountToken": False,
                                              "containers": [{"name": "c", "image": "nginx:1.25"}]}}, "default")
        fleet = new_fleet(client)
        computed = 0
        real_plan = stages.plan

        def counting_plan(*a: Any, **kw: Any) -> stages.Plan:
            nonlocal computed
            computed += 1
            return real_plan(*a, **kw)

        async def deliver(f: NodeFleet, resource: str, name: str, ns: str | None = None) -> dict:
            obj = await client.get(resource, name, ns)
            (f.pods if resource == "pods" else f.nodes).apply_event({"type": "MODIFIED", "object": obj})
            return obj

        stages.plan = counting_plan  # type: ignore[assignment]
        try:
            await deliver(fleet, "nodes", "node-1")
            await deliver(fleet, "pods", "web", "default")
            await fleet._sync_pod("default/web")
            assert client.patches == 1 and computed == 1
            running = await deliver(fleet, "pods", "web", "default")  # the echo
            assert running["status"]["phase"] == "Running"
            await fleet._sync_pod("default/web")
            assert client.patches == 1 and computed == 1  # known: nothing to do

            # a restarted fleet remembers nothing: it computes, and finds nothing to write
            fleet2 = new_fleet(client)
            await deliver(fleet2, "nodes", "node-1")
            await deliver(fleet2, "pods", "web", "default")
            await fleet2._sync_pod("default/web")
            assert client.patches == 1 and computed == 2
            computed = 1

            # someone else's write: computed, and the owned status is put back
            await other.patch("pods", "web", {"status": {"phase": "Pending"}}, "default", subresource="status",
                               patch_type="strategic")
            await deliver(fleet, "pods", "web", "default")
            await fleet._sync_pod("default/web")
            assert client.patches == 2 and computed == 2
            assert (await deliver(fleet, "pods", "web", "default"))["status"]["phase"] == "Running"
            await fleet._sync_pod("default/web")
            assert client.patches == 2 and computed == 2  # the echo of that write again

            # the node changes between our write and its echo: computed (the image now crashes)
            await other.patch("pods", "web", {"status": {"phase": "Pending"}}, "default", subresource="status",
                               patch_type="strategic")
            await deliver(fleet, "pods", "web", "default")
            await fleet._sync_pod("default/web")
            assert client.patches == 3 and computed == 3
            await other.patch("nodes", "node-1", {"metadata": {"annotations": {faults.CRASH_IMAGES: "nginx*"}}})
            await deliver(fleet, "nodes", "node-1")
            await deliver(fleet, "pods", "web", "default")
            await fleet._sync_pod("default/web")
            assert client.patches == 4 and computed == 4
            crashed = await deliver(fleet, "pods", "web", "default")
            assert "terminated" in crashed["status"]["containerStatuses"][0]["state"]

        finally:
            stages.plan = real_plan  # type: ignore[assignment]

    asyncio.run(asyncio.wait_for(main(), 120))
