"""CPU instructions per API write, counted by callgrind: a measure the machine's load cannot skew.

Wall-clock and CPU-time numbers on a shared, loaded machine swing 2-5x from run to run; the number
of instructions a piece of code executes does not. This benchmark runs
benchmarks/instructions_worker.py under ``valgrind --tool=callgrind`` (in-process: the real Registry
behind a real ApiServer on a SqliteStore, no HTTP, no TLS) and reports instructions (callgrind's
Ir) per operation:

- ops: a pod create, a lease PUT, a pod status PUT and a label patch, each N times by 32
  concurrent clients (the store's writer thread and the response's encoding included);
- requests: the request path around the handlers, a pod GET and a pod create through the in-process
  Loopback (middlewares, authentication, request info, routing, metrics, as `kubeling up`'s
  components send them) and a pod GET over plain HTTP to the aiohttp app (aiohttp's parsing too);
- components: a pod create through the Loopback with no pod watchers, then with every component of
  `kubeling up` running (their shared pod informer decoding the event, its indexes and handlers);
- pieces: the stages of a write alone (schema walk, defaults, admission, validation, storage
  encoding), on a fresh create body and on a running pod;
- server: a whole `kubeling up --nodes 0` process under callgrind, pod creates from 32 HTTPS
  clients outside it (TLS, aiohttp, the handlers, the SQLite writer thread, the components' watch):
  what the API benchmark's create rate is made of, without the machine's noise.

Compare two trees with ``--ir-root``: e.g. ``git worktree add /tmp/base HEAD~1`` then
``python -m benchmarks --only instructions --ir-root /tmp/base``. Instruction counts are
reproducible to within a fraction of a percent (PYTHONHASHSEED=0); they are not time (a cache miss
costs more than an add), but a change that executes fewer instructions is, on this kind of code,
faster. Callgrind runs the interpreter about 50x slower: the full size takes several minutes.
Skipped, with a message, when valgrind is not installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, Row

NAME = "instructions"
DESCRIPTION = ("instructions (callgrind Ir) per pod create / lease PUT / status PUT / patch, per request "
               "through the loopback and HTTP, and per stage")
WORKER = Path(__file__).resolve().parent / "instructions_worker.py"
WARM_UP = "warm-up"  # the worker's unreported first phase
SIZES = {"full": (1000, 200), "quick": (300, 100), "tiny": (40, 20)}  # ops per verb, calls per piece
OPS_NOTE = "in-process Registry + SqliteStore, 32 clients, no HTTP"
REQUESTS_NOTE = "whole request path (Loopback or HTTP without TLS), 32 clients"
COMPONENTS_NOTE = "`kubeling up`'s components on the loopback, 32 clients; until their informer has every pod"
SERVER_NOTE = "a whole `kubeling up --nodes 0` (TLS, aiohttp, components, writer thread); 32 HTTPS clients"
SERVER_WARM_CREATES = 300  # unmeasured creates first (compiled schema checks, warm caches)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ir-root", metavar="DIR", default=None,
                        help="instructions: measure the kubeling package of another tree (default: this one)")


def callgrind_counts(mode: str, n: int, root: Path) -> list[tuple[str, int]]:
    """(label, instructions per call) of each phase the worker brackets, in order."""
    with tempfile.TemporaryDirectory(prefix="kubeling-callgrind-") as tmp:
        out = Path(tmp) / "cg.out"
        labels = Path(tmp) / "labels"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--zero-before=getppid",
               "--dump-before=getpgrp", "--dump-instr=no", "--compress-strings=no",
               sys.executable, str(WORKER), mode, str(n), str(labels), str(root)]
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-20:])
            raise RuntimeError(f"callgrind run of the {mode} worker failed ({proc.returncode}):\n{tail}")
        names = labels.read_text().splitlines()
        counts = []
        for i, label in enumerate(names, start=1):
            if label != WARM_UP:
                counts.append((label, _total(Path(f"{out}.{i}")) // n))
        return counts


def server_count(n: int, root: Path) -> int:
    """Instructions per HTTPS pod create of a whole `kubeling up --nodes 0` under callgrind: counted
    (``callgrind_control -i on`` ... ``-d``) over n creates by 32 clients, after SERVER_WARM_CREATES."""
    from benchmarks.api import CONCURRENCY, closed_loop, ensure_namespaces, open_connections, pod_body
    from benchmarks.harness import Api, Server, run_async

    with tempfile.TemporaryDirectory(prefix="kubeling-callgrind-") as tmp:
        out = Path(tmp) / "cg.out"
        server = Server(wrapper=["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                 "--dump-instr=no", "--compress-strings=no"],
                        root=root, env={"PYTHONHASHSEED": "0"})

        def control(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(server.pid)], check=True, capture_output=True)

        async def drive() -> None:
            api = Api(server.client_config(), connections=CONCURRENCY)
            try:
                await ensure_namespaces(api, ["bench-a"])
                await open_connections(api)
                path = "/api/v1/namespaces/bench-a/pods"
                await closed_loop(api, [("POST", path, pod_body(f"warm-{i}")) for i in range(SERVER_WARM_CREATES)])
                control("-i", "on")
                done = await closed_loop(api, [("POST", path, pod_body(f"pod-{i}")) for i in range(n)])
                control("-d")
                if done.errors:
                    raise RuntimeError(f"creates under callgrind failed: {done.errors}")
            finally:
                await api.close()

        server.start(timeout=600)
        try:
            run_async(drive())
        finally:
            server.cleanup()
        return _total(Path(f"{out}.1")) // n


def _total(dump: Path) -> int:
    """The Ir total of one callgrind dump: its ``totals:`` line (the sum over its functions). Not
    ``summary:``, which in a process's first dump also holds part of what ran before the phase's
    zeroing (tens of millions of Ir of an asyncio worker's set-up, where the totals are right)."""
    text = dump.read_text()
    m = re.search(r"^totals:\s*(\d+)", text, re.MULTILINE) or re.search(r"^summary:\s*(\d+)", text, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no total in {dump}")
    return int(m.group(1))


def run(args: argparse.Namespace) -> list[Row]:
    if shutil.which("valgrind") is None:
        return [Row(NAME, "skipped", "valgrind is not installed (apt-get install valgrind): "
                    "no instruction counts")]
    n_ops, n_pieces = SIZES[getattr(args, "size", "full")]
    root = Path(getattr(args, "ir_root", None) or ROOT).resolve()
    if not (root / "kubeling" / "__init__.py").exists():
        raise SystemExit(f"--ir-root {root}: no kubeling package there")
    rows = [Row(NAME, "setup", f"callgrind Ir per call; tree {root}; {n_ops} ops per verb, "
                f"{n_pieces} calls per stage; PYTHONHASHSEED=0")]
    for label, ir in callgrind_counts("ops", n_ops, root):
        rows.append(Row(NAME, label, ir, "Ir/op", note=OPS_NOTE))
    for label, ir in callgrind_counts("requests", n_ops, root):
        rows.append(Row(NAME, label, ir, "Ir/op", note=REQUESTS_NOTE))
    comp = callgrind_counts("components", n_ops, root)
    for label, ir in comp:
        rows.append(Row(NAME, label, ir, "Ir/op", note=COMPONENTS_NOTE))
    rows.append(Row(NAME, "in-process components, per new pod", comp[1][1] - comp[0][1], "Ir/op",
                    note="the difference of the two rows above"))
    for label, ir in callgrind_counts("pieces", n_pieces, root):
        rows.append(Row(NAME, f"stage: {label}", ir, "Ir/call"))
    rows.append(Row(NAME, "HTTPS pod create, whole kubeling up", server_count(n_ops, root), "Ir/op",
                    note=SERVER_NOTE))
    return rows


if __name__ == "__main__":  # python -m benchmarks.instructions [--size S] [--ir-root DIR]
    from rich.console import Console

    from benchmarks.__main__ import render

    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--size", choices=list(SIZES), default="full")
    add_arguments(parser)
    render(run(parser.parse_args()), Console())
