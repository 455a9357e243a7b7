"""The etcd store beside SQLite in one run: the API benchmark and the DaemonSet benchmark on each.

Each measurement on etcd gets a fresh single-member etcd-server (Debian's etcd-server package) on a
loopback port with its data dir in a temporary directory, so runs do not see each other's objects.
The raw etcd put rate (plain Puts from 32 concurrent gRPC callers and from one) is measured against
the same kind of member in the same run, and the API's pod creates/s on etcd is printed as a ratio
of it, as the API benchmark does for SQLite with the raw commit rate. etcd itself is not pinned: it
shares the machine with the server (pinned to CPU 0 when possible) and the load generator.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks import api as api_bench
from benchmarks import daemonset as ds_bench
from benchmarks.harness import LOADGEN_CPU, SERVER_CPU, Row, Server, can_pin, pinned_to, run_async

NAME = "etcd"
DESCRIPTION = "etcd store beside SQLite: API benchmark, DaemonSet benchmark, raw etcd put rate"
DS_SIZES = {"full": [1000], "quick": [100], "tiny": [20]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own (--size picks the counts; the etcd binary is found on PATH or /usr/bin)."""


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if found is None:
        raise RuntimeError("the etcd binary is not installed (apt-get install etcd-server)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def etcd_member(timeout: float = 60) -> Iterator[str]:
    """A fresh one-member etcd on loopback; yields its ``HOST:PORT``."""
    client, peer = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="kubeling-bench-etcd-") as tmp:
        log = open(Path(tmp) / "etcd.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen([
            etcd_binary(), "--name", "bench", "--data-dir", str(Path(tmp) / "data"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
            "--quota-backend-bytes", str(8 * 2**30), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2) as r:
                        if json.loads(r.read()).get("health") == "true":
                            break
                except (OSError, ValueError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not start: {(Path(tmp) / 'etcd.log').read_text()[-2000:]}")
                time.sleep(0.1)
            yield f"127.0.0.1:{client}"
        finally:
            proc.kill()
            proc.wait()


def _raw_put_rates(seconds: float) -> tuple[float, float]:
    """Puts/s from 32 concurrent callers and from one, on a fresh member."""
    from kubeling.storage.etcd import raw_etcd_put_rate

    with etcd_member() as endpoint:
        many = run_async(raw_etcd_put_rate([endpoint], seconds=seconds, concurrency=api_bench.CONCURRENCY))
        one = run_async(raw_etcd_put_rate([endpoint], seconds=seconds, concurrency=1))
    return many, one


def _tagged(rows: list[Row], tag: str) -> list[Row]:
    for r in rows:
        r.benchmark = f"{r.benchmark}:{tag}"  # not [tag]: rich reads brackets as markup
    return rows


def _api(args: argparse.Namespace, store: str) -> list[Row]:
    sub = copy.copy(args)
    sub.store = store
    sub.profile_creates = None
    return api_bench.run(sub)


def _daemonset(n: int, store: str, raw: float, pin: bool) -> list[Row]:
    rows: list[Row] = []
    with pinned_to(LOADGEN_CPU if pin else None):
        server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=n)
        server.start(timeout=300)
        try:
            run_async(ds_bench._measure(server, n, rows, raw, None))
        finally:
            server.cleanup()
    return rows


def _value(rows: list[Row], prefix: str) -> float | None:
    row = next((r for r in rows if r.metric.startswith(prefix) and isinstance(r.value, (int, float))), None)
    return float(row.value) if row is not None else None  # type: ignore[arg-type]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run(args: argparse.Namespace) -> list[Row]:
    size = getattr(args, "size", "full")
    pin = getattr(args, "pin", True) and can_pin()
    seconds = 0.5 if size == "tiny" else 2.0
    rows: list[Row] = []

    raw_many, raw_one = _raw_put_rates(seconds)
    raw_sqlite = ds_bench._raw_rate(seconds)

    api_sqlite = _tagged(_api(args, "sqlite://"), "sqlite")
    with etcd_member() as endpoint:
        api_etcd = _tagged(_api(args, f"etcd://{endpoint}"), "etcd")
    rows += api_sqlite + api_etcd

    ds_rows: list[Row] = []
    for n in DS_SIZES[size]:
        ds_rows += _tagged(_daemonset(n, "sqlite://", raw_sqlite, pin), "sqlite")
        with etcd_member() as endpoint:
            ds_rows += _tagged(_daemonset(n, f"etcd://{endpoint}", raw_many, pin), "etcd")
    rows += ds_rows

    creates_sqlite = _value(api_sqlite, "pod creates/s")
    creates_etcd = _value(api_etcd, "pod creates/s")
    rows += [
        Row(NAME, f"raw etcd puts/s ({api_bench.CONCURRENCY} concurrent)", raw_many, "/s",
            note="one local member, plain Put, same run"),
        Row(NAME, "raw etcd puts/s (one at a time)", raw_one, "/s"),
        Row(NAME, "raw SQLite single-row commits/s", raw_sqlite, "/s", note="same disk, store's pragmas"),
        Row(NAME, "API creates/s on etcd / raw etcd puts/s", _ratio(creates_etcd, raw_many), "x",
            note=f"{api_bench.CONCURRENCY} clients vs {api_bench.CONCURRENCY} raw putters"),
        Row(NAME, "API creates/s etcd / SQLite", _ratio(creates_etcd, creates_sqlite), "x"),
        Row(NAME, "API get p99 etcd / SQLite", _ratio(_value(api_etcd, "get latency p99"),
                                                      _value(api_sqlite, "get latency p99")), "x"),
    ]
    for n in DS_SIZES[size]:
        for phase in ("create to all available", "set image to rolled out"):
            t_sqlite = _value([r for r in ds_rows if r.benchmark.endswith(":sqlite")], f"{n} nodes: {phase}")
            t_etcd = _value([r for r in ds_rows if r.benchmark.endswith(":etcd")], f"{n} nodes: {phase}")
            rows.append(Row(NAME, f"DaemonSet {n} nodes, {phase}: etcd / SQLite time", _ratio(t_etcd, t_sqlite),
                            "x"))
    return rows
