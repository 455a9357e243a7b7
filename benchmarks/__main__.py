"""`python -m benchmarks` (`make bench`): run every benchmark, print one table, keep the results as JSON.

Benchmarks are modules listed in BENCHMARKS, each with ``NAME``, ``DESCRIPTION``,
``run(args) -> list[Row]`` and optionally ``add_arguments(parser)``; a new one (DaemonSet at 5,000
nodes, the etcd store, rollout plans) is one more line here. Results go to
benchmarks/results/<name>-<timestamp>.json and benchmarks/results/latest.json (gitignored).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.harness import ROOT, Row, can_pin

# (name, module): run in this order
BENCHMARKS: list[tuple[str, str]] = [
    ("api", "benchmarks.api"),
    ("fleet", "benchmarks.fleet"),
    ("scheduler", "benchmarks.scheduler"),
    ("daemonset", "benchmarks.daemonset"),
    ("etcd", "benchmarks.etcd"),
    ("rollout", "benchmarks.rollout"),
    ("startup", "benchmarks.startup"),
    ("instructions", "benchmarks.instructions"),
]
RESULTS = Path(__file__).resolve().parent / "results"


def _load(selected: list[str]) -> list[ModuleType]:
    known = dict(BENCHMARKS)
    unknown = [n for n in selected if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [importlib.import_module(mod) for name, mod in BENCHMARKS if not selected or name in selected]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", dest="size", action="store_const", const="quick", default="full",
                   help="smaller counts (about a minute)")
    p.add_argument("--size", choices=["full", "quick", "tiny"], help="full (default), quick or tiny")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these benchmarks (repeatable or comma-separated): "
                        f"{', '.join(n for n, _ in BENCHMARKS)}")
    p.add_argument("--store", default="sqlite://", help="--store for kubeling up (default sqlite://)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the server to CPU 0 and the load generator to CPU 1")
    p.add_argument("--name", help="results file prefix (default: the benchmarks run, joined by +)")
    for _, mod in BENCHMARKS:
        module = importlib.import_module(mod)
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
    return p


def render(rows: list[Row], console: Console) -> None:
    table = Table(title="kubeling benchmarks", show_lines=False)
    for col, justify in (("benchmark", "left"), ("metric", "left"), ("value", "right"), ("unit", "left"),
                         ("target", "left"), ("", "center"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        if isinstance(r.value, str):
            continue  # informational rows go below the table
        value = ("-" if r.value is None else f"{r.value:,}" if isinstance(r.value, int)
                 else f"{r.value:,.2f}" if abs(r.value) < 100 else f"{r.value:,.0f}")
        status = {"PASS": "[green]PASS[/]", "MISS": "[red]MISS[/]"}.get(r.status, "")
        table.add_row(r.benchmark, r.metric, value, r.unit, r.target_text, status, r.note)
    console.print(table)
    for r in rows:
        if isinstance(r.value, str):
            console.print(f"[bold]{r.benchmark} {r.metric}:[/] {r.value}")


def _host() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except OSError:
        commit = None
    return {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": sys.version.split()[0],
            "platform": platform.platform(), "git_commit": commit}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.size is None:
        args.size = "full"
    selected = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    modules = _load(selected)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or pipe: keep table rows on one line
    if args.pin and not can_pin():
        console.print("[yellow]cannot pin to CPUs 0 and 1 (need taskset and 2 CPUs): running unpinned[/]")
        args.pin = False
    load = os.getloadavg()[0]
    if load > 0.5:
        console.print(f"[yellow]load average {load:.2f}: other work on this machine skews the numbers[/]")
    rows: list[Row] = []
    failed = []
    started = time.time()
    for module in modules:
        console.print(f"[bold]{module.NAME}[/]: {module.DESCRIPTION} ({args.size})")
        t0 = time.perf_counter()
        try:
            rows += module.run(args)
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            failed.append(module.NAME)
            console.print(f"[red]{module.NAME} failed[/]\n{traceback.format_exc()}")
        console.print(f"  {module.NAME} took {time.perf_counter() - t0:.0f}s")
    render(rows, console)

    name = args.name or "+".join(m.NAME for m in modules)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    doc = {"name": name, "timestamp": stamp, "size": args.size, "store": args.store, "pinned": args.pin,
           "host": _host(), "loadavg_before": os.getloadavg(), "failed": failed, "rows": [r.to_json() for r in rows]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_bytes(data)
    (RESULTS / "latest.json").write_bytes(data)
    console.print(f"results: {path.relative_to(ROOT)} (and {(RESULTS / 'latest.json').relative_to(ROOT)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
