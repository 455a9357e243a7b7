"""The DaemonSet controller at scale: converge on N nodes, then roll out a new image.

`kubeling up --nodes N` runs (API server, controllers, scheduler and the simulated kubelets all in
that one process) until every node is Ready. Then, as a user would: `kubectl create -f` a
DaemonSet (no tolerations, so the N workers and not the control plane) and the clock runs until
its status says numberAvailable == desiredNumberScheduled == N; `kubectl set image` and the clock
runs until `kubectl rollout status`'s condition holds (observedGeneration current, every pod
updated and available), with maxUnavailable 10%. Progress is followed with one watch on the
DaemonSet, so the benchmark adds no polling to the request count.

Reported per phase: seconds, API requests (the server's apiserver_request_total, everything the
controller, scheduler and kubelets sent) and per node, and the CPU time of the whole `kubeling up`
process from /proc (the controller shares it with the API server, scheduler and fleet: an upper
bound on the controller's own). The store's raw single-row commit rate, measured in the same run,
puts the figures in proportion: pods converged (or replaced) per second over raw commits per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from benchmarks.fleet import wait_all_ready
from benchmarks.harness import (
    LOADGEN_CPU,
    SERVER_CPU,
    Api,
    Row,
    Server,
    can_pin,
    pinned_to,
    profiled,
    run_async,
)

NAME = "daemonset"
DESCRIPTION = "DaemonSet: kubectl create to all available, set image to rolled out (maxUnavailable 10%)"
CONVERGE_TARGET_S = 15.0  # at 5,000 nodes
ROLLOUT_TARGET_S = 30.0
SIZES = {"full": [100, 1000, 5000], "quick": [100, 1000], "tiny": [20]}
DS_NAME = "bench"
NAMESPACE = "default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds-profile", metavar="DIR", type=Path,
                        help="daemonset: sample the server with py-spy into DIR/daemonset-<N>-<phase>.txt")
    parser.add_argument("--ds-nodes", metavar="N[,N...]",
                        help="daemonset: these cluster sizes instead of the --size ones (e.g. 5000)")


def manifest() -> str:
    return orjson.dumps({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": DS_NAME, "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app": DS_NAME}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                 "template": {"metadata": {"labels": {"app": DS_NAME}},
                              "spec": {"containers": [{"name": "agent", "image": "busybox:1",
                                                       "resources": {"requests": {"cpu": "1m",
                                                                                  "memory": "1Mi"}}}]}}},
    }).decode()


def kubectl(server: Server, *args: str, input: str | None = None) -> str:
    r = subprocess.run(["kubectl", *args], capture_output=True, text=True, input=input, timeout=120,
                       env=dict(os.environ, KUBECONFIG=str(server.kubeconfig)))
    if r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


async def request_counts(api: Api) -> Counter[str]:
    """apiserver_request_total by "verb resource[/subresource]", summed over the other labels."""
    status, body = await api.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    counts: Counter[str] = Counter()
    for line in body.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.rindex("}")].split(","))
            sub = labels.get("subresource", '""').strip('"')
            key = f'{labels.get("verb", "").strip(chr(34))} {labels.get("resource", "").strip(chr(34))}'
            counts[key + (f"/{sub}" if sub else "")] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def rolled_out(ds: dict[str, Any], n: int) -> bool:
    """kubectl rollout status's condition for a DaemonSet, with every one of the n nodes covered."""
    meta, st = ds["metadata"], ds.get("status") or {}
    return (st.get("observedGeneration", 0) >= meta.get("generation", 0)
            and st.get("desiredNumberScheduled") == n
            and st.get("updatedNumberScheduled") == n
            and st.get("numberAvailable") == n)


async def watch_until(api: Api, rv: str, n: int, done: asyncio.Event, state: dict[str, Any]) -> None:
    """Follow the DaemonSet; set ``done`` when rolled_out, noting the time it was seen."""
    path = (f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets?watch=1&resourceVersion={rv}"
            f"&fieldSelector=metadata.name%3D{DS_NAME}")
    async for ev in api.watch(path):
        obj = ev.get("object") or {}
        if ev.get("type") in ("ADDED", "MODIFIED"):
            state["last"] = obj.get("status")
            if state.get("armed") and rolled_out(obj, n):
                state["seen_at"] = time.perf_counter()
                done.set()
                return


async def _phase(server: Server, api: Api, n: int, action: Any, *, timeout: float,
                 profile: Path | None) -> tuple[float, Counter[str], float]:
    """Run ``action`` (blocking kubectl) and wait until rolled out: seconds, requests, CPU seconds."""
    status, body = await api.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets?limit=1")
    rv = orjson.loads(body)["metadata"]["resourceVersion"]
    done = asyncio.Event()
    state: dict[str, Any] = {}
    watcher = asyncio.create_task(watch_until(api, rv, n, done, state))
    await asyncio.sleep(0.2)
    req0 = await request_counts(api)
    cpu0 = server.stats.cpu_seconds()
    with profiled(server.pid, profile):
        t0 = time.perf_counter()
        await asyncio.to_thread(action)
        state["armed"] = True
        # A watch event that arrived before the action returned is re-checked with a fresh GET.
        _, body = await api.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets/{DS_NAME}")
        if rolled_out(orjson.loads(body), n):
            state["seen_at"] = time.perf_counter()
            done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout=timeout)
        except TimeoutError:
            raise _Unfinished(timeout, state.get("last") or {}) from None
        finally:
            watcher.cancel()
        elapsed = state["seen_at"] - t0
    cpu = server.stats.cpu_seconds() - cpu0
    by_kind = await request_counts(api)
    by_kind.subtract(req0)
    by_kind["get daemonsets"] -= 1  # this function's own GET
    return elapsed, by_kind, cpu


class _Unfinished(Exception):
    """A phase that did not finish within its timeout: reported as a row, not a crash."""

    def __init__(self, timeout: float, status: dict[str, Any]) -> None:
        super().__init__(timeout)
        self.timeout = timeout
        self.status = status

    def note(self) -> str:
        keys = ("desiredNumberScheduled", "updatedNumberScheduled", "numberAvailable")
        return f"did not finish in {self.timeout:g}s; last status " + ", ".join(
            f"{k} {self.status.get(k)}" for k in keys)


def _requests_note(req: Counter[str], n: int, cpu: float, seconds: float) -> str:
    top = ", ".join(f"{k} {v / n:.1f}" for k, v in req.most_common(6) if v > 0)
    return (f"{req.total():,} requests; per node: {top}; server CPU {cpu:.1f}s "
            f"({cpu / seconds * 100:.0f}% of a core)")


def _raw_rate(seconds: float) -> float:
    from kubeling.storage.sqlite import raw_sqlite_commit_rate

    with tempfile.TemporaryDirectory(prefix="kubeling-raw-") as tmp:
        return raw_sqlite_commit_rate(Path(tmp) / "raw.db", seconds=seconds)


class _Rows(list):  # type: ignore[type-arg]
    """Rows that are also printed as they come, so a long run that fails later still shows them."""

    def append(self, row: Row) -> None:
        super().append(row)
        if isinstance(row.value, (int, float)):
            print(f"  {row.metric}: {row.value:,.2f} {row.unit} ({row.note})", flush=True)


async def _measure(server: Server, n: int, rows: list[Row], raw: float, profile_dir: Path | None) -> None:
    api = Api(server.client_config(), connections=4)
    big = n >= 5000
    try:
        await wait_all_ready(api, n + 1, timeout=600)
        await asyncio.sleep(3)  # start-up work (first leases, taint removals) drains

        def prof(phase: str) -> Path | None:
            return profile_dir / f"daemonset-{n}-{phase}.txt" if profile_dir else None

        phases = [  # phase, label, how it starts, timeout, target, what the rate counts
            ("converge", "create to all available", lambda: kubectl(server, "create", "-f", "-", input=manifest()),
             max(300.0, n / 10), CONVERGE_TARGET_S, "pods/s"),
            ("rollout", "set image to rolled out",
             lambda: kubectl(server, "set", "image", f"ds/{DS_NAME}", "agent=busybox:2"),
             max(600.0, n / 5), ROLLOUT_TARGET_S, "pods replaced/s"),
        ]
        for phase, label, start, timeout, target, rate in phases:
            try:
                t, req, cpu = await _phase(server, api, n, start, timeout=timeout, profile=prof(phase))
            except _Unfinished as exc:
                rows.append(Row(NAME, f"{n} nodes: {label}", exc.timeout, "s",
                                target=("<", target) if big else None, note=exc.note()))
                return
            rows.append(Row(NAME, f"{n} nodes: {label}", t, "s", target=("<", target) if big else None,
                            note=f"{n / t:,.0f} {rate} = {n / t / raw:.3f} x raw commits/s"))
            rows.append(Row(NAME, f"{n} nodes: {phase} API requests per node", req.total() / n, "req/node",
                            note=_requests_note(req, n, cpu, t)))
    finally:
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    counts = SIZES[getattr(args, "size", "full")]
    if getattr(args, "ds_nodes", None):
        counts = [int(n) for n in str(args.ds_nodes).split(",") if n.strip()]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    profile_dir = getattr(args, "ds_profile", None)
    rows: list[Row] = _Rows()
    raw = _raw_rate(2.0)
    rows.append(Row(NAME, "setup", f"server {f'CPU {SERVER_CPU}' if pin else 'not pinned'}; store {store}; "
                    "CPU = the whole `kubeling up` process (API server, controllers, scheduler, fleet) from "
                    f"/proc; raw SQLite single-row commits/s on this disk: {raw:,.0f}"))
    rows.append(Row(NAME, "raw SQLite single-row commits/s", raw, "/s", note="same disk, store's pragmas"))
    with pinned_to(LOADGEN_CPU if pin else None):
        for n in counts:
            server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=n)
            server.start(timeout=300)
            try:
                run_async(_measure(server, n, rows, raw, profile_dir))
            finally:
                server.cleanup()
    return list(rows)
