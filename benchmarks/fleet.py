"""The simulated node fleet at scale: time until every node is Ready, steady-state CPU, memory.

`kubeling up --nodes N` (one process: API server, controllers, scheduler and the fleet) is
started as users start it; the clock runs from launching the process until a list of nodes
shows all N+1 (workers and the control plane) Ready. Once every node also has its Lease (the
fleet's start-up writes are done), with nothing else happening, the server's CPU time is sampled
from /proc/<pid>/stat over a window: what heartbeats (Lease renewals every 10 s, node status) and
the controllers watching them cost, as a share of one core, and per Lease renewal (the process's
CPU over the renewals the API server counted in the window: steadier than the share on a busy
machine, where a starved server renews late and so does less work per second).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

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
    profiled,
    run_async,
)

NAME = "fleet"
DESCRIPTION = "node fleet: time to N nodes Ready, steady-state CPU share of one core, RSS"
READY_TARGET_S = 30.0  # at 5,000 nodes
CPU_TARGET = 20.0  # % of one core at steady state, at 5,000 nodes
# node counts, steady-state window (s), settle before it (s; None: the window, at most 10 s). The full
# size settles past 150 s, when node status reports (every 5 min, the first half a period after
# registration) have started: the steady state a cluster lives in, not its first minutes.
SIZES = {"full": ([1000, 5000], 20.0, 160.0), "quick": ([200, 1000], 10.0, None), "tiny": ([20], 3.0, None)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's --size picks the node counts; these override them for one focused run."""
    parser.add_argument("--fleet-nodes", type=int, action="append", metavar="N",
                        help="fleet: node counts to run instead of the size's (repeatable)")
    parser.add_argument("--fleet-window", type=float, metavar="S", help="fleet: steady-state CPU window (s)")
    parser.add_argument("--fleet-settle", type=float, metavar="S",
                        help="fleet: wait this long after every Lease exists before measuring (default: 160 s "
                             "at full size, else the window, at most 10 s); 150 s or more also covers node status "
                             "reports, which start half a report period (5 min) after registration")
    parser.add_argument("--fleet-profile", type=Path, metavar="DIR",
                        help="fleet: py-spy the steady-state window into DIR/fleet-<N>.txt (raw stacks)")


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


LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


async def wait_all_leases(api: Api, expected: int, *, timeout: float = 600, interval: float = 0.5) -> None:
    """Poll until kube-node-lease holds ``expected`` Leases (a one-item page tells the count)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        status, body = await api.request("GET", LEASES_PATH + "?limit=1")
        if status == 200:
            page = orjson.loads(body)
            count = len(page.get("items") or []) + ((page.get("metadata") or {}).get("remainingItemCount") or 0)
            if count >= expected:
                return
        await asyncio.sleep(interval)
    raise TimeoutError(f"only {count}/{expected} node Leases after {timeout:g}s")


async def lease_renewals(api: Api) -> float:
    """Lease updates and patches the API server has answered so far (its apiserver_request_total)."""
    status, body = await api.request("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines() if status == 200 else ():
        if line.startswith("apiserver_request_total{") and 'resource="leases"' in line and (
                'verb="PUT"' in line or 'verb="PATCH"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _measure(server: Server, nodes: int, window: float, rows: list[Row], t_launch: float,
                   profile: Path | None = None, settle: float | None = None) -> None:
    api = Api(server.client_config(), connections=4)
    try:
        t_api = time.perf_counter()
        await wait_all_ready(api, nodes + 1)
        t_ready = time.perf_counter()
        big = nodes >= 5000
        rows.append(Row(NAME, f"{nodes} nodes: launch to all Ready", t_ready - t_launch, "s",
                        target=("<", READY_TARGET_S) if big else None,
                        note=f"API up after {t_api - t_launch:.1f}s; +1 control-plane node"))
        await wait_all_leases(api, nodes + 1)
        t_leases = time.perf_counter()
        # let the rest of start-up (taint removals, first renewals) drain
        settled = min(window, 10.0) if settle is None else settle
        await asyncio.sleep(settled)
        renewed, cpu, t0 = await lease_renewals(api), server.stats.cpu_seconds(), time.perf_counter()
        with profiled(server.pid, profile), CpuMeter(server.stats) as meter:
            await asyncio.sleep(window)
        renewed, cpu = await lease_renewals(api) - renewed, server.stats.cpu_seconds() - cpu
        elapsed = time.perf_counter() - t0
        rows.append(Row(NAME, f"{nodes} nodes: steady-state server CPU", meter.server_share * 100, "% of a core",
                        target=("<", CPU_TARGET) if big else None,
                        note=f"/proc/<pid>/stat over {window:g}s, from {settled:.0f}s after all Leases "
                             f"({t_leases - t_launch:.1f}s after launch)"))
        rows.append(Row(NAME, f"{nodes} nodes: CPU per Lease renewal", cpu / max(renewed, 1) * 1e6,
                        "us", note=f"{renewed / elapsed:.0f} renewals/s (10 s period: {nodes / 10:.0f}/s due); "
                                   "all of the process's CPU, so an upper bound"))
        rows.append(Row(NAME, f"{nodes} nodes: server RSS", server.stats.rss_mib(), "MiB",
                        note=f"peak {server.stats.peak_rss_mib():.0f} MiB"))
    finally:
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    counts, window, settle = SIZES[getattr(args, "size", "full")]
    counts = getattr(args, "fleet_nodes", None) or counts
    window = getattr(args, "fleet_window", None) or window
    settle = getattr(args, "fleet_settle", None) or settle
    prof_dir = getattr(args, "fleet_profile", None)
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
                run_async(_measure(server, n, window, rows, t_launch,
                                   prof_dir / f"fleet-{n}.txt" if prof_dir else None, settle))
            finally:
                server.cleanup()
    return rows
