"""The scheduler's throughput: pods bound per second draining thousands of pending pods over thousands of nodes.

`kubeling up --nodes N --disable scheduler` (API server, controllers and the fleet in one process,
pinned to one core) runs until all nodes are Ready; P pods without any node constraint (the
scheduler samples nodes as upstream's percentageOfNodesToScore does, so each pod looks at a few
hundred nodes) are created by 32 concurrent clients and stay Pending, since no scheduler runs. Then
`kubeling scheduler` starts as its own process, as kube-scheduler runs beside kube-apiserver, on the
other core, and a watch notes when each pod gets its nodeName. Reported: binds per second over the
binding window (first bind to last), from the scheduler's start to the last bind, and the CPU of the
server (bindings, the fleet starting the pods, Scheduled events, heartbeats) and of the scheduler
per pod. Measuring while pods are still being created would measure the create rate instead.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import orjson

from benchmarks.fleet import wait_all_ready
from benchmarks.harness import (
    LOADGEN_CPU,
    ROOT,
    SERVER_CPU,
    Api,
    CpuMeter,
    ProcessStats,
    Row,
    Server,
    can_pin,
    pinned_to,
    run_async,
)

NAME = "scheduler"
DESCRIPTION = "scheduler: pods bound per second, P pending pods over N nodes"
BIND_TARGET = 500.0  # pods bound per second at 5,000 pods over 5,000 nodes
CONCURRENCY = 32
NAMESPACE = "default"
SIZES = {"full": (5000, 5000), "quick": (1000, 1000), "tiny": (20, 100)}  # nodes, pods


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own."""


def pod_body(name: str) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "sched-bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })


async def _watch_binds(api: Api, rv: str, bound: dict[str, float], want: int, done: asyncio.Event) -> None:
    path = (f"/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={rv}"
            "&labelSelector=app%3Dsched-bench&allowWatchBookmarks=false")
    async for ev in api.watch(path):
        obj = ev.get("object") or {}
        name = (obj.get("metadata") or {}).get("name")
        if name and (obj.get("spec") or {}).get("nodeName") and name not in bound:
            bound[name] = time.perf_counter()
            if len(bound) >= want:
                done.set()
                return


async def _create_pending(api: Api, pods: int) -> tuple[float, dict[int, int]]:
    names = iter(f"sched-{i:05}" for i in range(pods))
    errors: dict[int, int] = {}

    async def creator() -> None:
        for name in names:
            st, _ = await api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod_body(name))
            if st != 201:
                errors[st] = errors.get(st, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0, errors


def _start_scheduler(server: Server, cpu: int | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kubeling.cli.main", "scheduler", "--kubeconfig", str(server.kubeconfig),
           "--leader-elect=false"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    log = open(server.data_dir.parent / "scheduler.log", "ab")  # noqa: SIM115 - the child's lifetime
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    finally:
        log.close()


async def _measure(server: Server, nodes: int, pods: int, rows: list[Row], sched_cpu: int | None) -> None:
    api = Api(server.client_config(), connections=CONCURRENCY + 2)
    sched: subprocess.Popen[bytes] | None = None
    try:
        await wait_all_ready(api, nodes + 1)
        await asyncio.sleep(3)
        took, errors = await _create_pending(api, pods)
        rows.append(Row(NAME, f"{pods} pending pods created", took, "s",
                        note=f"{pods / took:.0f} creates/s" + (f"; create errors {errors}" if errors else "")))
        await asyncio.sleep(2)  # the fleet and controllers settle; nothing binds these pods yet
        status, body = await api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?limit=1")
        rv = orjson.loads(body)["metadata"]["resourceVersion"]
        bound: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch_binds(api, rv, bound, pods, done))
        await asyncio.sleep(0.2)
        cpu0 = server.stats.cpu_seconds()
        with CpuMeter(server.stats) as meter:
            t0 = time.perf_counter()
            sched = _start_scheduler(server, sched_cpu)
            sched_stats = ProcessStats(sched.pid)
            await asyncio.wait_for(done.wait(), timeout=max(180.0, pods / 10))
            sched_cpu_s = sched_stats.cpu_seconds()
        cpu = server.stats.cpu_seconds() - cpu0
        watcher.cancel()
        times = sorted(bound.values())
        window = times[-1] - times[0] if len(times) > 1 else float("nan")
        big = nodes >= 5000 and pods >= 5000
        rows.append(Row(NAME, f"pods bound/s ({pods} pending pods, {nodes} nodes)", (len(times) - 1) / window,
                        "/s", target=(">=", BIND_TARGET) if big else None, note="first bind to last bind"))
        rows.append(Row(NAME, "pods bound/s from scheduler start", len(times) / (times[-1] - t0), "/s",
                        note=f"first bind {times[0] - t0:.1f}s after the process started (imports, informer sync)"))
        rows.append(Row(NAME, "server CPU while binding", meter.server_share * 100, "% of a core"))
        rows.append(Row(NAME, "server CPU per pod bound", cpu / pods * 1000, "ms",
                        note="binding, the fleet starting the pod, Scheduled event, heartbeats meanwhile"))
        rows.append(Row(NAME, "scheduler process CPU per pod", sched_cpu_s / pods * 1000, "ms",
                        note="its whole life: start-up, informer sync, scheduling, binding requests"))
        rows.append(Row(NAME, "server RSS after", server.stats.rss_mib(), "MiB"))
    finally:
        if sched is not None:
            sched.terminate()
            try:
                sched.wait(10)
            except subprocess.TimeoutExpired:
                sched.kill()
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    nodes, pods = SIZES[getattr(args, "size", "full")]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    rows: list[Row] = []
    with pinned_to(LOADGEN_CPU if pin else None):
        server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=nodes,
                        extra_args=["--disable", "scheduler"])
        rows.append(Row(NAME, "setup", f"server {server.pinning} (`kubeling up --disable scheduler`); "
                        f"`kubeling scheduler` process on CPU {LOADGEN_CPU if pin else '-'} after the pods exist; "
                        "pods request 10m cpu / 16Mi, no node constraints"))
        server.start(timeout=300)
        try:
            run_async(_measure(server, nodes, pods, rows, LOADGEN_CPU if pin else None))
        finally:
            server.cleanup()
    return rows
