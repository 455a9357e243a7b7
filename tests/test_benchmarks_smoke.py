"""The API benchmark's code runs end to end in a tiny mode and yields numeric rows (no timing checked);
the instructions benchmark's phases come out of callgrind one by one."""

from __future__ import annotations

import argparse
import math
import shutil

import pytest

from benchmarks import api, instructions
from benchmarks.harness import ROOT, Row, percentile


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))


def test_row_status() -> None:
    assert Row("x", "rate", 2500.0, "/s", (">=", 2000)).status == "PASS"
    assert Row("x", "p99", 60.0, "ms", ("<", 50)).status == "MISS"
    assert Row("x", "info", "text").status == ""


def test_api_benchmark_tiny() -> None:
    rows = api.run(argparse.Namespace(size="tiny", pin=False, store="sqlite://"))
    by_metric = {r.metric: r for r in rows}
    numeric = [r for r in rows if not isinstance(r.value, str)]
    assert len(numeric) >= 15
    for r in numeric:
        assert isinstance(r.value, float | int) and not math.isnan(r.value), r
    assert by_metric["pod creates/s (32 clients)"].value > 0
    assert by_metric["create errors"].value == 0
    assert by_metric["get errors"].value == 0
    assert by_metric["list of 25 pods: body"].value > 0
    assert by_metric["watch fan-out to 5: p99"].value > 0
    assert by_metric["server RSS with 50 pods stored"].value > 10
    assert by_metric["raw SQLite single-row commits/s"].value > 0
    assert by_metric["create latency p99"].status in ("PASS", "MISS")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_come_phase_by_phase() -> None:
    """The worker's phase markers are calls callgrind can see in this interpreter (a distribution's
    stripped, statically linked build hides its own functions): one dump per stage, in order."""
    counts = instructions.callgrind_counts("pieces", 2, ROOT)
    labels = [label for label, _ in counts]
    assert labels[0] == "schema walk: create body" and labels[-1] == "decode from storage", labels
    assert len(labels) == 11
    for label, ir in counts:
        assert 1_000 < ir < 5_000_000, (label, ir)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_of_a_whole_server_per_https_create() -> None:
    """A real `kubeling up` under callgrind, switched on and dumped around creates from HTTPS clients."""
    ir = instructions.server_count(40, ROOT)
    assert 100_000 < ir < 10_000_000, ir
