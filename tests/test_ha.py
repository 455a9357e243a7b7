"""High availability, with real processes on loopback: a 3-member etcd cluster, two API servers
sharing it (and one PKI), two leader-elected controller managers, two leader-elected schedulers and
one `kubeling nodes` fleet of 200 simulated nodes.

A DaemonSet rolling update (maxSurge 0, maxUnavailable 10%) over the 200 nodes completes while the
leading controller manager is SIGKILLed (the standby takes the Lease over), one etcd member is
SIGKILLed and one API server is SIGKILLed (every component fails over to the other; kubectl is then
pointed at the survivor). A watch on the daemon pods, running through all of it, checks that no node
ever has two non-terminating daemon pods; at the end every node has exactly one, at the new revision.
Leader election runs with upstream's durations (15 s lease, 10 s renew deadline, 2 s retry).

The controller managers list API server B first and the scheduler, fleet and watch list A first, so
A's death is survived by fail-over of the scheduler, fleet and watch while the DaemonSet controller
keeps writing through B. (A pod create in flight to a dying API server can be committed without an
answer; the DaemonSet controller, like upstream's, then lowers its expectations and may create a
second pod for that node before its informer shows the first: a known gap reported to the lead.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from etcd_util import EtcdCluster, require_etcd
from test_processes import (
    ApiServerProc,
    Proc,
    daemonset_manifest,
    ds_status,
    kubectl,
    lease_holder,
    rolled_out,
    wait_for,
)

from kubeling.controllers.daemonset.pods import target_node_name

NODES = 200
APP = "ha-agent"


class DaemonPodWatch:
    """Watches the daemon pods (list + watch through a failing-over client, in its own thread) and
    records every moment a node had more than one non-terminating daemon pod."""

    def __init__(self, kubeconfig: Path, servers: list[str]) -> None:
        self.kubeconfig = kubeconfig
        self.servers = servers
        self.active: dict[str, set[str]] = {}   # node -> keys of its non-terminating daemon pods
        self.node_of: dict[str, str] = {}        # pod key -> node it counts against
        self.seen: set[str] = set()
        self.last: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.violations: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="pod-watch")

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(60), "pod watch did not sync"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from kubeling.client.config import ClientConfig
        from kubeling.client.informer import Informer
        from kubeling.client.rest import Client

        config = ClientConfig.from_kubeconfig(self.kubeconfig)
        config.server = list(self.servers)
        client = Client(config, component="test-pod-watch")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        informer = Informer(client, "pods", "default", label_selector=f"app={APP}")
        informer.add_handler(self._on_event)
        task = asyncio.create_task(informer.run())
        try:
            await informer.wait_synced()
            self._ready.set()
            await self._stop.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()

    def _on_event(self, etype: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        self.events += 1
        key = pod["metadata"]["name"]
        self.seen.add(key)
        prev = self.node_of.pop(key, None)
        if prev is not None:
            self.active[prev].discard(key)
        terminating = bool(pod["metadata"].get("deletionTimestamp")) or \
            (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        node = target_node_name(pod)
        if etype == "DELETED" or terminating or not node:
            return
        self.node_of[key] = node
        self.last[key] = pod
        pods = self.active.setdefault(node, set())
        pods.add(key)
        if len(pods) > 1:
            desc = [f"{k} gen={self.last[k]['metadata'].get('labels', {}).get('pod-template-generation')} "
                    f"created={self.last[k]['metadata'].get('creationTimestamp')} "
                    f"phase={(self.last[k].get('status') or {}).get('phase')}" for k in sorted(pods)]
            self.violations.append(f"{time.strftime('%H:%M:%S')} {node}: {desc} at rv "
                                   f"{pod['metadata'].get('resourceVersion')}")


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    require_etcd()
    root = tmp_path_factory.mktemp("ha")
    etcd = EtcdCluster.start(root / "etcd", members=3)
    procs: list[Proc] = []
    try:
        a = ApiServerProc("apiserver-a", root / "a", store=etcd.url)
        a.start()
        procs.append(a)
        a.wait_ready()
        b = ApiServerProc("apiserver-b", root / "b", store=etcd.url, pki_dir=root / "a" / "pki")
        b.start()
        procs.append(b)
        b.wait_ready()
        kc = str(a.kubeconfig)

        def component(name: str, *args: str, servers: str = f"{a.url},{b.url}") -> Proc:
            p = Proc(name, [*args, "--kubeconfig", kc, "--server", servers], root).start()
            procs.append(p)
            return p

        # The controller managers prefer B (see the module docstring); everything else starts on A.
        cms = [component(f"cm{i}", "controller-manager", servers=f"{b.url},{a.url}") for i in (1, 2)]
        scheds = [component("sched1", "scheduler"), component("sched2", "scheduler")]
        # a pull delay makes each wave of the rollout take a while, so the failures land mid-rollout
        component("nodes", "nodes", "--nodes", str(NODES), "--pull-delay", "1s")
        yield {"etcd": etcd, "a": a, "b": b, "cms": cms, "scheds": scheds, "procs": procs}
    finally:
        for p in reversed(procs):
            p.stop()
        etcd.stop()


def _leader(procs: list[Proc], kubeconfig: Path, lease: str, server: str | None = None) -> Proc | None:
    holder = lease_holder(kubeconfig, lease, server)
    return next((p for p in procs if holder and p.identity == holder), None)


def _updated(kubeconfig: Path, server: str | None = None) -> int:
    """Pods at the current template, once the controller has seen the current generation."""
    st = ds_status(kubeconfig, APP, server)
    if st.get("observedGeneration") != st["generation"]:
        return 0
    return st.get("updatedNumberScheduled") or 0


def test_rolling_update_survives_failures(ha: dict[str, Any]) -> None:
    a, b, etcd, procs = ha["a"], ha["b"], ha["etcd"], ha["procs"]
    kc = a.kubeconfig

    # one PKI and token file: the second API server serves the same certificate to the same kubeconfig
    assert (b.data_dir / "pki").resolve() == (a.data_dir / "pki").resolve()
    assert kubectl(kc, "get", "--raw", "/readyz", server=b.url) == "ok"

    def nodes_ready() -> bool:
        out = kubectl(kc, "get", "nodes", "--no-headers").splitlines()
        return len(out) == NODES + 1 and all(" Ready " in line for line in out)
    wait_for(nodes_ready, timeout=300, what=f"{NODES + 1} nodes Ready", logs=procs)
    # both API servers serve the same objects
    assert len(kubectl(b.kubeconfig, "get", "nodes", "--no-headers").splitlines()) == NODES + 1
    wait_for(lambda: _leader(ha["cms"], kc, "kube-controller-manager"), what="a controller manager leads",
             logs=procs)
    wait_for(lambda: _leader(ha["scheds"], kc, "kube-scheduler"), what="a scheduler leads", logs=procs)

    watch = DaemonPodWatch(kc, [a.url, b.url])
    watch.start()
    try:
        kubectl(kc, "apply", "-f", "-", input=daemonset_manifest(APP, "agent:v1", max_unavailable="10%"))
        wait_for(lambda: rolled_out(kc, APP, NODES), timeout=300, what="agent:v1 on every node", logs=procs)

        kubectl(kc, "set", "image", f"ds/{APP}", "agent=agent:v2")
        # (a) the leading controller manager dies mid-rollout; the standby takes the Lease over
        wait_for(lambda: _updated(kc) >= 20, timeout=300, what="rollout under way", logs=procs)
        cm_leader = wait_for(lambda: _leader(ha["cms"], kc, "kube-controller-manager"), what="the leader",
                             logs=procs)
        cm_leader.kill9()
        progress = {"controller manager killed": _updated(kc)}
        standby = next(p for p in ha["cms"] if p is not cm_leader)
        wait_for(lambda: lease_holder(kc, "kube-controller-manager") == standby.identity, timeout=120,
                 what="the standby controller manager acquires the lease", logs=procs)
        # (b) one etcd member dies
        etcd.kill(0)
        progress["etcd member killed"] = _updated(kc)
        wait_for(lambda: _updated(kc) >= 60, timeout=300, what="rollout continues after the etcd kill",
                 logs=procs)
        # (c) one API server dies: components fail over, kubectl goes to the survivor
        progress["API server killed"] = _updated(kc)
        a.kill9()
        print(f"pods updated when each failure struck: {progress}")
        wait_for(lambda: rolled_out(kc, APP, NODES, server=b.url), timeout=600, what="agent:v2 on every node",
                 logs=procs)
    finally:
        watch.stop()

    st = ds_status(kc, APP, server=b.url)
    assert (st["desiredNumberScheduled"], st["updatedNumberScheduled"], st["numberAvailable"]) == \
        (NODES, NODES, NODES)
    assert st.get("numberUnavailable", 0) == 0
    ds = json.loads(kubectl(kc, "get", "ds", APP, "-o", "json", server=b.url))
    generation = str(ds["metadata"]["generation"])
    pods = json.loads(kubectl(kc, "get", "pods", "-l", f"app={APP}", "-o", "json", server=b.url))["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    per_node: dict[str, list[dict[str, Any]]] = {}
    for p in live:
        per_node.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    assert sorted(per_node) == sorted(f"node-{i}" for i in range(1, NODES + 1))
    for node, ps in per_node.items():
        assert len(ps) == 1, (node, [p["metadata"]["name"] for p in ps])
        p = ps[0]
        assert p["spec"]["containers"][0]["image"] == "agent:v2", node
        assert p["metadata"]["labels"]["pod-template-generation"] == generation, node
        assert p["status"].get("phase") == "Running", node
    # the watch (its own thread, failing over too) may still be catching up with the last pods
    deadline = time.monotonic() + 60
    while len(watch.seen) < 2 * NODES and time.monotonic() < deadline:
        time.sleep(0.2)
    assert watch.violations == [], "\n".join(watch.violations[:20])
    assert len(watch.seen) >= 2 * NODES  # the watch saw both generations go by
    assert lease_holder(kc, "kube-controller-manager", server=b.url) == standby.identity
