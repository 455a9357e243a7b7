"""The scheduler's throughput: pods bound per second with thousands of pending pods and nodes.

`kubeling up --nodes N` runs until all nodes are Ready; then P pods without any node
constraint (the scheduler samples nodes as upstream's percentageOfNodesToScore does, so
each pod looks at a few hundred nodes) are created by 32 concurrent clients while a watch
notes when each pod gets its nodeName. Reported: binds per second over the binding window
(first bind to last), and end to end (first create to last bind). Everything runs in the
one server process (API server, scheduler, fleet running the bound pods), pinned to one core.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from benchmarks.fleet import wait_all_ready
from benchmarks.harness import (
    LOADGEN_CPU,
    SERVER_CPU,
    Api,
    CpuMeter,
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
    async with api.session.get(api.base + path) as resp:
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                obj = orjson.loads(line).get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if name and (obj.get("spec") or {}).get("nodeName") and name not in bound:
                    bound[name] = time.perf_counter()
                    if len(bound) >= want:
                        done.set()
                        return


async def _measure(server: Server, nodes: int, pods: int, rows: list[Row]) -> None:
    api = Api(server.client_config(), connections=CONCURRENCY + 2)
    try:
        await wait_all_ready(api, nodes + 1)
        await asyncio.sleep(3)
        status, body = await api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?limit=1")
        rv = orjson.loads(body)["metadata"]["resourceVersion"]
        bound: dict[str, float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch_binds(api, rv, bound, pods, done))
        await asyncio.sleep(0.2)
        names = iter(f"sched-{i:05}" for i in range(pods))
        errors: dict[int, int] = {}

        async def creator() -> None:
            for name in names:
                st, _ = await api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod_body(name))
                if st != 201:
                    errors[st] = errors.get(st, 0) + 1

        cpu0 = server.stats.cpu_seconds()
        with CpuMeter(server.stats) as meter:
            t0 = time.perf_counter()
            await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
            t_created = time.perf_counter()
            await asyncio.wait_for(done.wait(), timeout=max(120.0, pods / 20))
        cpu = server.stats.cpu_seconds() - cpu0
        watcher.cancel()
        times = sorted(bound.values())
        window = times[-1] - times[0] if len(times) > 1 else float("nan")
        big = nodes >= 5000 and pods >= 5000
        rows.append(Row(NAME, f"pods bound/s ({pods} pods, {nodes} nodes)", (len(times) - 1) / window, "/s",
                        target=(">=", BIND_TARGET) if big else None, note="first bind to last bind"))
        rows.append(Row(NAME, "pods bound/s end to end", len(times) / (times[-1] - t0), "/s",
                        note=f"first create to last bind; creates took {t_created - t0:.1f}s"
                             + (f"; create errors {errors}" if errors else "")))
        rows.append(Row(NAME, "server CPU while scheduling", meter.server_share * 100, "% of a core"))
        # what a pod costs the whole process (create, schedule, bind, Scheduled event, the fleet
        # starting it, heartbeats meanwhile): the number to watch when the machine is shared
        rows.append(Row(NAME, "server CPU per pod", cpu / pods * 1000, "ms", note="first create to last bind"))
        rows.append(Row(NAME, "server RSS after", server.stats.rss_mib(), "MiB"))
    finally:
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    nodes, pods = SIZES[getattr(args, "size", "full")]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    rows: list[Row] = []
    with pinned_to(LOADGEN_CPU if pin else None):
        server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=nodes)
        rows.append(Row(NAME, "setup", f"server {server.pinning}; {CONCURRENCY} creating clients; "
                        "pods request 10m cpu / 16Mi, no node constraints"))
        server.start(timeout=300)
        try:
            run_async(_measure(server, nodes, pods, rows))
        finally:
            server.cleanup()
    return rows
