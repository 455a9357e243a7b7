"""What every benchmark needs: a `kubeling up` to measure, a TLS client to load it, and result rows.

The server runs as a real subprocess (the same command users type), optionally pinned to one CPU
with ``taskset`` while the load generator pins itself to another, so "on one core" means what it
says: the server gets exactly one core and does not compete with its own load. Process-level
counters (RSS, CPU time) come from /proc, which is why this is Linux-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from kubeling.client.config import ClientConfig

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
LOADGEN_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One measured (or informational) line of the results table.

    ``target`` is ``(">=" | "<=" | "<" | ">", threshold)``; rows without one show no PASS/MISS.
    """

    benchmark: str
    metric: str
    value: float | int | str | None
    unit: str = ""
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def status(self) -> str:
        if self.target is None or not isinstance(self.value, (int, float)):
            return ""
        op, threshold = self.target
        ok = {">=": self.value >= threshold, ">": self.value > threshold,
              "<=": self.value <= threshold, "<": self.value < threshold}[op]
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return ""
        op, threshold = self.target
        return f"{op} {threshold:g} {self.unit}".strip()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target_text or None
        d["status"] = self.status or None
        return d


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def can_pin() -> bool:
    """Pinning needs taskset and both CPUs 0 and 1 usable by this process."""
    return shutil.which("taskset") is not None and {SERVER_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)


@contextlib.contextmanager
def pinned_to(cpu: int | None) -> Iterator[None]:
    """Run this (load generator) process on one CPU for the block, then restore its affinity."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessStats:
    """Reads a process's memory and CPU time from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def rss_mib(self) -> float:
        return self.status_kib("VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return self.status_kib("VmHWM") / 1024

    def _stat(self) -> list[str]:
        """The fields of /proc/PID/stat after the parenthesised command name (state first)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()

    def cpu_seconds(self) -> float:
        fields = self._stat()  # utime and stime are the 14th and 15th fields of the whole line
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def minor_faults(self) -> int:
        """Page faults served without I/O (the 10th field): mostly first touches of new memory."""
        return int(self._stat()[7])


class CpuMeter:
    """Share of one core a process used over a block: server via /proc, ourselves via os.times."""

    def __init__(self, server: ProcessStats) -> None:
        self.server = server

    def __enter__(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._s0 = self.server.cpu_seconds()
        self._f0 = self.server.minor_faults()
        t = os.times()
        self._l0 = t.user + t.system
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._t0
        t = os.times()
        self.server_share = (self.server.cpu_seconds() - self._s0) / elapsed
        self.server_faults = self.server.minor_faults() - self._f0
        self.loadgen_share = (t.user + t.system - self._l0) / elapsed


class Server:
    """A `kubeling up --nodes 0` (or `kubeling apiserver`) subprocess in a temporary data dir."""

    def __init__(self, *, store: str = "sqlite://", cpu: int | None = None, nodes: int = 0,
                 extra_args: Sequence[str] = (), data_dir: Path | None = None, command: str = "up",
                 wrapper: Sequence[str] = (), root: Path | None = None, env: dict[str, str] | None = None) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="kubeling-bench-")
        self.data_dir = data_dir or Path(self._tmp.name) / "data"  # type: ignore[union-attr]
        self.store = store
        self.cpu = cpu
        self.nodes = nodes
        self.command = command  # "up" (everything) or "apiserver" (the API server alone)
        self.extra_args = list(extra_args)
        self.wrapper = list(wrapper)  # a command the server runs under (valgrind)
        self.root = root or ROOT  # the tree whose kubeling runs (its directory comes first on sys.path)
        self.env = env or {}
        self.port = free_port()
        self.kubeconfig = self.data_dir / "kubeconfig"
        self.log_path = self.data_dir.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("server not started")
        return self.proc.pid  # taskset execs the server, so this is the server's own pid

    @property
    def stats(self) -> ProcessStats:
        return ProcessStats(self.pid)

    @property
    def pinning(self) -> str:
        return f"CPU {self.cpu} (taskset -c {self.cpu})" if self.cpu is not None else "not pinned"

    def start(self, timeout: float = 90) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "kubeling.cli.main", self.command, "--data-dir", str(self.data_dir),
               "--port", str(self.port), "--store", self.store, *self.extra_args]
        if self.command == "up":
            cmd += ["--nodes", str(self.nodes)]
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen([*self.wrapper, *cmd], stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **self.env))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubeling up exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.kubeconfig.exists() and self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"kubeling up did not become ready in {timeout:g}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        import urllib.request

        try:
            cfg = self.client_config()
            ctx = cfg.ssl_context()
            with urllib.request.urlopen(f"{cfg.servers[0]}/readyz", timeout=2,
                                        context=ctx if isinstance(ctx, ssl.SSLContext) else None) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001 - not up yet (kubeconfig half-written, port closed, 500)
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def client_config(self) -> ClientConfig:
        return ClientConfig.from_kubeconfig(self.kubeconfig)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class Api:
    """A thin aiohttp client for load generation: raw bytes in and out, status codes, no retries.

    The kubeling Client does more per request (error mapping, resource naming); a load generator
    wants the least client-side work so it measures the server.
    """

    def __init__(self, cfg: ClientConfig, *, connections: int = 32) -> None:
        self.base = cfg.servers[0]
        ctx = cfg.ssl_context()
        self.headers = {"Authorization": f"Bearer {cfg.token}", "Accept": "application/json"}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx if ctx is not None else False, limit=connections,
                                           force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            headers=self.headers,
        )

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else None
        async with self.session.request(method, self.base + path, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def watch(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch on ``path`` (a URL with ?watch=1...), decoded, as they arrive."""
        async with self.session.get(self.base + path) as resp:
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield orjson.loads(line)

    async def close(self) -> None:
        await self.session.close()


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """Sample ``pid`` with py-spy (if installed; --gil: CPU only) into ``out`` (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(spy).exists():
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "--gil", "-r", "200", "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_async(coro: Any) -> Any:
    """asyncio.run with uvloop when available (as the server uses)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)
