"""Start-up: how soon a fresh kubeling answers, and what CEL rules cost per custom-object create.

Issue 8 promises the pytest fixture ``kubeling_cluster`` ready in under a second (envtest takes
several). Each start is a real subprocess, timed from launch (as a test session pays it):
``import kubeling.cli.main`` alone, ``kubeling up --nodes 0`` until /readyz answers (fresh data
dir, and again on the same dir: a restart), and ``KubelingCluster(nodes=2).start()`` from
kubeling.testing (which returns once both nodes are Ready). Several runs each, median and best;
a loaded machine moves the median, the best shows what the code costs.

Then custom-object creates per second against one CRD whose schema carries a CEL rule
(``x-kubernetes-validations``) on every object, beside the same CRD without rules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from benchmarks.harness import (
    LOADGEN_CPU,
    SERVER_CPU,
    Api,
    Row,
    Server,
    can_pin,
    free_port,
    pinned_to,
    run_async,
)

NAME = "startup"
DESCRIPTION = "start-up: import, `kubeling up` to /readyz, kubeling_cluster to 2 Ready nodes; CEL creates/s"
FIXTURE_TARGET_S = 1.0
READYZ_TARGET_S = 1.0
# (start-up repetitions, custom objects created per CRD, concurrent clients)
SIZES = {"full": (7, 3000, 16), "quick": (5, 1000, 16), "tiny": (2, 60, 4)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own (the runner's --size picks the repetitions and object counts)."""


def _time_import() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import kubeling.cli.main"], check=True)
    return time.perf_counter() - t0


def _time_bare_python() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def _time_up_readyz(data_dir: Path, store: str) -> float:
    """Launch `kubeling up --nodes 0` on ``data_dir``; seconds until /readyz answers 200; then stop it."""
    port = free_port()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kubeling.cli.main", "up", "--data-dir", str(data_dir),
                             "--port", str(port), "--nodes", "0", "--store", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"kubeling up exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("kubeling up did not answer /readyz in 120 s")
            time.sleep(0.005)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _time_fixture(nodes: int) -> float:
    from kubeling.testing import KubelingCluster

    t0 = time.perf_counter()
    cluster = KubelingCluster(nodes=nodes).start()
    try:
        while _ready_workers(cluster) < nodes:  # the fixture waits for them; older ones did not
            if time.perf_counter() - t0 > 120:
                raise TimeoutError(f"{nodes} nodes not Ready after 120 s")
            time.sleep(0.005)
        return time.perf_counter() - t0
    finally:
        cluster.stop()


def _ready_workers(cluster: object) -> int:
    items = cluster._request("GET", "/api/v1/nodes")["items"]  # type: ignore[attr-defined]
    return sum(1 for n in items if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})
               and any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (n.get("status") or {}).get("conditions") or []))


def _stats(rows: list[Row], metric: str, values: list[float], *, target: float | None = None,
           note: str = "") -> None:
    med = statistics.median(values)
    rows.append(Row(NAME, f"{metric}: median", round(med * 1000, 1), "ms",
                    ("<", target * 1000) if target else None, note))
    rows.append(Row(NAME, f"{metric}: best", round(min(values) * 1000, 1), "ms"))


def _startup_rows(reps: int, store: str) -> list[Row]:
    rows: list[Row] = []
    _time_import()  # warm the OS page cache (and bytecode caches where they are written)
    _stats(rows, "python -c pass", [_time_bare_python() for _ in range(reps)], note="interpreter alone")
    _stats(rows, "import kubeling.cli.main", [_time_import() for _ in range(reps)], note="wall, with interpreter")
    fresh, restart = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="kubeling-bench-") as tmp:
            fresh.append(_time_up_readyz(Path(tmp) / "data", store))
            restart.append(_time_up_readyz(Path(tmp) / "data", store))
    _stats(rows, "up --nodes 0 to /readyz (fresh dir)", fresh, target=READYZ_TARGET_S)
    _stats(rows, "up --nodes 0 to /readyz (restart)", restart, target=READYZ_TARGET_S)
    _stats(rows, "kubeling_cluster to 2 Ready nodes", [_time_fixture(2) for _ in range(reps)],
           target=FIXTURE_TARGET_S, note="KubelingCluster(nodes=2).start()")
    return rows


# ---- custom-object creates with and without CEL rules ----------------------------------------------

def _crd(plural: str, kind: str, *, rules: bool) -> dict[str, object]:
    spec_schema: dict[str, object] = {
        "type": "object",
        "properties": {"replicas": {"type": "integer", "minimum": 0},
                       "maxReplicas": {"type": "integer"}, "image": {"type": "string"}},
    }
    if rules:
        spec_schema["x-kubernetes-validations"] = [
            {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
            {"rule": "self.image.startsWith('registry.example/')", "message": "image from our registry only"},
        ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.bench.kubeling.dev"},
        "spec": {"group": "bench.kubeling.dev", "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "properties": {"spec": spec_schema}}}}]},
    }


async def _wait_served(api: Api, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _ = await api.request("GET", path)
        if status == 200:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{path} not served after 30 s")


async def _creates_per_second(api: Api, plural: str, kind: str, count: int, clients: int, *,
                              first: int = 0) -> tuple[float, int]:
    path = f"/apis/bench.kubeling.dev/v1/namespaces/default/{plural}"
    await _wait_served(api, path)
    errors = 0
    queue = iter(range(first, first + count))

    async def worker() -> None:
        nonlocal errors
        for i in queue:
            body = orjson.dumps({"apiVersion": "bench.kubeling.dev/v1", "kind": kind,
                                 "metadata": {"name": f"o-{i}"},
                                 "spec": {"replicas": i % 5, "maxReplicas": 5,
                                          "image": f"registry.example/app:{i}"}})
            status, _ = await api.request("POST", path, body)
            errors += status != 201

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return count / (time.perf_counter() - t0), errors


async def _cel(server: Server, count: int, clients: int) -> list[Row]:
    api = Api(server.client_config(), connections=clients)
    rows: list[Row] = []
    try:
        # a rejected object first: the rules are really evaluated
        for plural, kind, rules in (("plains", "Plain", False), ("ruled", "Ruled", True)):
            status, body = await api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                             orjson.dumps(_crd(plural, kind, rules=rules)))
            if status != 201:
                raise RuntimeError(f"CRD {plural}: {status} {body[:300]!r}")
        await _wait_served(api, "/apis/bench.kubeling.dev/v1/namespaces/default/ruled")
        status, _ = await api.request("POST", "/apis/bench.kubeling.dev/v1/namespaces/default/ruled", orjson.dumps(
            {"apiVersion": "bench.kubeling.dev/v1", "kind": "Ruled", "metadata": {"name": "bad"},
             "spec": {"replicas": 9, "maxReplicas": 1, "image": "elsewhere/x"}}))
        if status != 422:
            raise RuntimeError(f"an object breaking the CEL rules got {status}, not 422")
        warm = max(count // 10, clients)  # first requests pay for connections, caches, compiled rules
        await _creates_per_second(api, "plains", "Plain", warm, clients, first=count)
        await _creates_per_second(api, "ruled", "Ruled", warm, clients, first=count)
        # two alternating rounds, the better of each: the order alone (warming, GC) moved results ~20%
        plain = ruled = 0.0
        plain_err = ruled_err = 0
        for r in range(2):
            rate, err = await _creates_per_second(api, "plains", "Plain", count, clients, first=2 * count + r * count)
            plain, plain_err = max(plain, rate), plain_err + err
            rate, err = await _creates_per_second(api, "ruled", "Ruled", count, clients, first=2 * count + r * count)
            ruled, ruled_err = max(ruled, rate), ruled_err + err
    finally:
        await api.close()
    note = f"{count} objects, {clients} clients, best of 2 rounds"
    rows.append(Row(NAME, "custom-object creates/s, no rules", round(plain), "/s", note=note))
    rows.append(Row(NAME, "custom-object creates/s, 2 CEL rules each", round(ruled), "/s", note=note))
    rows.append(Row(NAME, "CEL rules: creates/s ratio", round(ruled / plain, 3) if plain else None, "",
                    note="with rules / without"))
    rows.append(Row(NAME, "custom-object create errors", plain_err + ruled_err, ""))
    return rows


def run(args: argparse.Namespace) -> list[Row]:
    reps, count, clients = SIZES[getattr(args, "size", "full")]
    store = getattr(args, "store", "sqlite://")
    pin = getattr(args, "pin", True) and can_pin()
    rows = [Row(NAME, "setup", f"unpinned start-ups, {reps} runs each; PYTHONDONTWRITEBYTECODE="
                f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}; store {store}")]
    rows += _startup_rows(reps, store)
    with pinned_to(LOADGEN_CPU if pin else None):
        server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=0)
        server.start()
        try:
            rows += run_async(_cel(server, count, clients))
        finally:
            server.cleanup()
    return rows
