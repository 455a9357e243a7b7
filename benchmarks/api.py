"""The API server benchmark of issue 2: creates, gets, a big list, watch fan-out and memory over HTTPS.

Load comes from real HTTP clients (aiohttp, TLS, keep-alive, 32 closed-loop workers), the
server is an unmodified `kubeling up --nodes 0`. The benchmark pods name a scheduler nobody runs
(``schedulerName: kubeling-bench``) so the in-process scheduler leaves them alone: every write
measured is the benchmark's own. The raw SQLite single-row commit rate is measured on the same
disk in the same run, so the API's create rate can be read as a fraction of what the disk allows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from dataclasses import dataclass
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
    percentile,
    pinned_to,
    profiled,
    run_async,
)

NAME = "api"
DESCRIPTION = "API server over HTTPS: creates/s, gets/s, latency, list, watch fan-out, RSS"
CONCURRENCY = 32
CREATES_TARGET = 2000.0  # pod creates/s
P99_TARGET_MS = 50.0  # single-object requests at 32 clients
NAMESPACES = ("bench-a", "bench-b")  # the list is of bench-a alone
WATCH_NS = "bench-watch"


@dataclass(frozen=True)
class Sizes:
    pods: int  # stored in total, half in each of NAMESPACES
    gets: int
    lists: int
    watchers: int
    watch_writes: int


SIZES = {
    "full": Sizes(pods=10_000, gets=20_000, lists=5, watchers=100, watch_writes=200),
    "quick": Sizes(pods=2_000, gets=5_000, lists=3, watchers=100, watch_writes=50),
    "tiny": Sizes(pods=50, gets=100, lists=1, watchers=5, watch_writes=5),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this benchmark (the runner adds --quick, --only, --store, --no-pin)."""
    parser.add_argument("--profile-creates", type=Path, metavar="FILE",
                        help="api: py-spy (if installed) samples the server during creates into FILE "
                             "(collapsed stacks; slows the server, so numbers of that run are not comparable)")


def pod_body(name: str) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"schedulerName": "kubeling-bench",
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    })


class Latencies:
    """Closed-loop results of one phase: per-request seconds, failures by status, wall time."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.errors: dict[int, int] = {}
        self.elapsed = 0.0

    def add(self, other: Latencies) -> None:
        self.samples += other.samples
        self.elapsed += other.elapsed
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n

    @property
    def rate(self) -> float:
        return len(self.samples) / self.elapsed if self.elapsed else 0.0

    def ms(self, p: float) -> float:
        return percentile(self.samples, p) * 1000


async def closed_loop(api: Api, requests: list[tuple[str, str, bytes | None]], *,
                      concurrency: int = CONCURRENCY, ok: tuple[int, ...] = (200, 201)) -> Latencies:
    """``concurrency`` workers each send the next request as soon as their previous one returned."""
    result = Latencies()
    todo = iter(requests)

    async def worker() -> None:
        for method, path, body in todo:
            t0 = time.perf_counter()
            status, _ = await api.request(method, path, body)
            result.samples.append(time.perf_counter() - t0)
            if status not in ok:
                result.errors[status] = result.errors.get(status, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - start
    return result


async def open_connections(api: Api, n: int = CONCURRENCY) -> None:
    """Open the clients' ``n`` keep-alive connections before anything is measured: n concurrent cheap
    GETs. Otherwise the first n creates each pay a TLS handshake (~80 ms for the first 32 in a row
    on one core), which is connection set-up, not the single-object request the latency rows are about."""
    results = await asyncio.gather(*(api.request("GET", "/version", None) for _ in range(n)))
    bad = [status for status, _ in results if status != 200]
    if bad:
        raise RuntimeError(f"GET /version answered {bad[0]}")


async def ensure_namespaces(api: Api, names: list[str], timeout: float = 60) -> None:
    """Create the namespaces and wait for their default ServiceAccount (pods are refused without it)."""
    for ns in names:
        status, body = await api.request("POST", "/api/v1/namespaces",
                                         orjson.dumps({"metadata": {"name": ns}}))
        if status not in (201, 409):
            raise RuntimeError(f"creating namespace {ns}: {status} {body[:300]!r}")
    deadline = time.monotonic() + timeout
    for ns in names:
        while (await api.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default"))[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no default ServiceAccount in {ns} after {timeout:g}s")
            await asyncio.sleep(0.1)


async def watch_fanout(server: Server, api: Api, *, watchers: int, writes: int) -> list[float]:
    """Seconds from sending a pod create until the last of ``watchers`` watch streams carried it."""
    cfg = server.client_config()
    watch_api = Api(cfg, connections=watchers + 1)
    status, body = await api.request("GET", f"/api/v1/namespaces/{WATCH_NS}/pods?limit=1")
    if status != 200:
        raise RuntimeError(f"listing {WATCH_NS} pods: {status}")
    rv = orjson.loads(body)["metadata"]["resourceVersion"]
    seen: dict[str, int] = {}
    done: dict[str, asyncio.Event] = {}
    arrived: dict[str, float] = {}

    def expect(name: str) -> asyncio.Event:
        return done.setdefault(name, asyncio.Event())

    async def watch() -> None:
        path = f"/api/v1/namespaces/{WATCH_NS}/pods?watch=true&resourceVersion={rv}"
        async with watch_api.session.get(watch_api.base + path) as resp:
            if resp.status != 200:
                raise RuntimeError(f"watch: {resp.status} {await resp.text()}")
            async for line in resp.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if event.get("type") != "ADDED":
                    continue
                name = event["object"]["metadata"]["name"]
                seen[name] = seen.get(name, 0) + 1
                if seen[name] == watchers:
                    arrived[name] = time.perf_counter()
                    expect(name).set()

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    try:
        # Warm-up writes until every watcher is connected and has seen one.
        for i in range(100):
            name = f"warmup-{i}"
            await api.request("POST", f"/api/v1/namespaces/{WATCH_NS}/pods", pod_body(name))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(expect(name).wait(), 2)
            if expect(name).is_set():
                break
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()  # type: ignore[misc]
        else:
            raise RuntimeError(f"{watchers} watchers never all saw a write")
        delays = []
        for i in range(writes):
            name = f"fanout-{i:04d}"
            t0 = time.perf_counter()
            status, body = await api.request("POST", f"/api/v1/namespaces/{WATCH_NS}/pods", pod_body(name))
            if status != 201:
                raise RuntimeError(f"create {name}: {status} {body[:300]!r}")
            await asyncio.wait_for(expect(name).wait(), 30)
            delays.append(arrived[name] - t0)
        return delays
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await watch_api.close()


async def _measure(server: Server, sizes: Sizes, rows: list[Row], *, profile: Path | None = None) -> None:
    stats = server.stats
    b = NAME
    api = Api(server.client_config(), connections=CONCURRENCY)
    try:
        await ensure_namespaces(api, [*NAMESPACES, WATCH_NS])
        await open_connections(api)
        rss_idle = stats.rss_mib()

        # Creates, half into each namespace; the list of the first half sits between the halves.
        per_ns = sizes.pods // len(NAMESPACES)
        creates = Latencies()
        list_times: list[float] = []
        list_bytes = list_items = 0
        cpu_server = cpu_loadgen = 0.0
        faults = 0
        for k, ns in enumerate(NAMESPACES):
            reqs = [("POST", f"/api/v1/namespaces/{ns}/pods", pod_body(f"pod-{i:05d}")) for i in range(per_ns)]
            with profiled(server.pid, profile and profile.with_suffix(f".{ns}.txt")), CpuMeter(stats) as cpu:
                part = await closed_loop(api, reqs)
            cpu_server += cpu.server_share * part.elapsed
            cpu_loadgen += cpu.loadgen_share * part.elapsed
            faults += cpu.server_faults
            creates.add(part)
            if k == 0:
                for _ in range(sizes.lists):
                    t0 = time.perf_counter()
                    status, body = await api.request("GET", f"/api/v1/namespaces/{ns}/pods")
                    list_times.append(time.perf_counter() - t0)
                    if status != 200:
                        raise RuntimeError(f"list: {status} {body[:300]!r}")
                    list_bytes = len(body)
                    list_items = len(orjson.loads(body)["items"])
        rss_full = stats.rss_mib()

        names = [(ns, f"pod-{i:05d}") for ns in NAMESPACES for i in range(per_ns)]
        rnd = random.Random(2)
        reqs = [("GET", "/api/v1/namespaces/{}/pods/{}".format(*rnd.choice(names)), None)
                for _ in range(sizes.gets)]
        with CpuMeter(stats) as get_cpu:
            gets = await closed_loop(api, reqs)

        fanout = await watch_fanout(server, api, watchers=sizes.watchers, writes=sizes.watch_writes)
        rss_end = stats.rss_mib()
        rss_peak = stats.peak_rss_mib()
    finally:
        await api.close()

    c = CONCURRENCY
    rows += [
        Row(b, f"pod creates/s ({c} clients)", creates.rate, "/s", (">=", CREATES_TARGET),
            note=f"{len(creates.samples)} pods"),
        Row(b, "create latency p50", creates.ms(50), "ms"),
        Row(b, "create latency p99", creates.ms(99), "ms", ("<", P99_TARGET_MS)),
        Row(b, "create errors", sum(creates.errors.values()), "", ("<=", 0), note=_codes(creates.errors)),
        Row(b, "server CPU during creates", 100 * cpu_server / creates.elapsed, "% of a core"),
        Row(b, "server CPU per create", 1e6 * cpu_server / max(len(creates.samples), 1), "µs"),
        Row(b, "server page faults per create", faults / max(len(creates.samples), 1), "",
            note="minor faults: first touches of memory new to the process"),
        Row(b, "load generator CPU during creates", 100 * cpu_loadgen / creates.elapsed, "% of a core"),
        Row(b, f"pod gets/s ({c} clients)", gets.rate, "/s", note=f"{len(gets.samples)} gets"),
        Row(b, "get latency p50", gets.ms(50), "ms"),
        Row(b, "get latency p99", gets.ms(99), "ms", ("<", P99_TARGET_MS)),
        Row(b, "get errors", sum(gets.errors.values()), "", ("<=", 0), note=_codes(gets.errors)),
        Row(b, "server CPU during gets", 100 * get_cpu.server_share, "% of a core"),
        Row(b, f"list of {list_items} pods: time (median)", percentile(list_times, 50) * 1000, "ms",
            note=f"{len(list_times)} runs"),
        Row(b, f"list of {list_items} pods: body", list_bytes / 2**20, "MiB"),
        Row(b, f"watch fan-out to {sizes.watchers}: p50", percentile(fanout, 50) * 1000, "ms",
            note=f"{len(fanout)} writes; create sent -> last watcher got it"),
        Row(b, f"watch fan-out to {sizes.watchers}: p99", percentile(fanout, 99) * 1000, "ms"),
        Row(b, "server RSS idle (after start)", rss_idle, "MiB"),
        Row(b, f"server RSS with {sizes.pods} pods stored", rss_full, "MiB"),
        Row(b, "server RSS at end / peak", rss_end, "MiB", note=f"peak {rss_peak:.0f} MiB"),
    ]


def _codes(errors: dict[int, int]) -> str:
    return ", ".join(f"{n}x HTTP {code}" for code, n in sorted(errors.items()))


def run(args: argparse.Namespace) -> list[Row]:
    sizes = SIZES[getattr(args, "size", "full")]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    rows: list[Row] = []
    with pinned_to(LOADGEN_CPU if pin else None):
        with tempfile.TemporaryDirectory(prefix="kubeling-raw-") as tmp:
            raw = _raw_commit_rate(Path(tmp) / "raw.db", 0.5 if sizes is SIZES["tiny"] else 2.0)
        server = Server(store=store, cpu=SERVER_CPU if pin else None)
        rows.append(Row(NAME, "setup", f"server {server.pinning}; load generator "
                        + (f"CPU {LOADGEN_CPU} (sched_setaffinity)" if pin else "not pinned")
                        + f"; store {store}; {CONCURRENCY} aiohttp clients, TLS, keep-alive"
                        + f"; load average {os.getloadavg()[0]:.2f} at start"))
        with server:
            run_async(_measure(server, sizes, rows, profile=getattr(args, "profile_creates", None)))
    creates = next(r for r in rows if r.metric.startswith("pod creates/s"))
    rows.append(Row(NAME, "raw SQLite single-row commits/s", raw, "/s", note="same disk, store's pragmas"))
    rows.append(Row(NAME, "ratio API creates/s / raw commits/s", creates.value / raw if raw else None, "x"))
    return rows


def _raw_commit_rate(path: Path, seconds: float) -> float:
    from kubeling.storage.sqlite import raw_sqlite_commit_rate

    return raw_sqlite_commit_rate(path, seconds=seconds)
