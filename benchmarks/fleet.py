"""The simulated node fleet at scale: time until every node is Ready, steady-state CPU, memory.

`kubeling up --nodes N` (one process: API server, controllers, scheduler and the fleet) is
started as users start it; the clock runs from launching the process until a list of nodes
shows all N+1 (workers and the control plane) Ready. Then, with nothing else happening, the
server's CPU time is sampled from /proc/<pid>/stat over a window: what heartbeats (Lease
renewals every 10 s, node status) and the controllers watching them cost, as a share of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

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

NAME = "fleet"
DESCRIPTION = "node fleet: time to N nodes Ready, steady-state CPU share of one core, RSS"
READY_TARGET_S = 30.0  # at 5,000 nodes
CPU_TARGET = 20.0  # % of one core at steady state, at 5,000 nodes
SIZES = {"full": ([1000, 5000], 20.0), "quick": ([200, 1000], 10.0), "tiny": ([20], 3.0)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own (the runner's --size picks the node counts)."""


def _all_ready(body: bytes, expected: int) -> tuple[int, bool]:
    items = orjson.loads(body).get("items") or []
    ready = sum(1 for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (n.get("status") or {}).get("conditions") or []))
    return ready, len(items) == expected and ready == expected


async def wait_all_ready(api: Api, expected: int, *, timeout: float = 600, interval: float = 0.5) -> int:
    """Poll the node list until all ``expected`` nodes are Ready; the number Ready at the end."""
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        status, body = await api.request("GET", "/api/v1/nodes")
        if status == 200:
            ready, done = _all_ready(body, expected)
            if done:
                return ready
        await asyncio.sleep(interval)
    raise TimeoutError(f"only {ready}/{expected} nodes Ready after {timeout:g}s")


async def _measure(server: Server, nodes: int, window: float, rows: list[Row], t_launch: float) -> None:
    api = Api(server.client_config(), connections=4)
    try:
        t_api = time.perf_counter()
        await wait_all_ready(api, nodes + 1)
        t_ready = time.perf_counter()
        big = nodes >= 5000
        rows.append(Row(NAME, f"{nodes} nodes: launch to all Ready", t_ready - t_launch, "s",
                        target=("<", READY_TARGET_S) if big else None,
                        note=f"API up after {t_api - t_launch:.1f}s; +1 control-plane node"))
        await asyncio.sleep(min(window, 10.0))  # let start-up work (first leases, taint removals) drain
        with CpuMeter(server.stats) as meter:
            await asyncio.sleep(window)
        rows.append(Row(NAME, f"{nodes} nodes: steady-state server CPU", meter.server_share * 100, "% of a core",
                        target=("<", CPU_TARGET) if big else None, note=f"/proc/<pid>/stat over {window:g}s"))
        rows.append(Row(NAME, f"{nodes} nodes: server RSS", server.stats.rss_mib(), "MiB",
                        note=f"peak {server.stats.peak_rss_mib():.0f} MiB"))
    finally:
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    counts, window = SIZES[getattr(args, "size", "full")]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    rows: list[Row] = []
    with pinned_to(LOADGEN_CPU if pin else None):
        for n in counts:
            server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=n)
            if n == counts[0]:
                rows.append(Row(NAME, "setup", f"server {server.pinning}; store {store}; all components in "
                                "one `kubeling up` process"))
            t_launch = time.perf_counter()
            server.start(timeout=300)
            try:
                run_async(_measure(server, n, window, rows, t_launch))
            finally:
                server.cleanup()
    return rows
