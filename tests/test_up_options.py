"""`kubeling up` options that change how the components are composed: --disable (a component left
out, to run as its own process) and --no-loopback (components over HTTPS inside one process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubeling.cli import malloctuning
from tests.conftest import ROOT, Cluster


def pod(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}})


def node_of(c: Cluster, name: str) -> str | None:
    return json.loads(c.kubectl("get", "pod", name, "-o", "json"))["spec"].get("nodeName")


def test_disabled_scheduler_leaves_pods_pending_until_one_runs_apart(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "data", nodes=1, extra_args=["--disable", "scheduler"])
    c.start()
    sched = None
    try:
        c.wait_for(lambda: " Ready " in c.kubectl("get", "node", "node-1"), what="node-1 Ready")
        c.kubectl("create", "-f", "-", input=pod("waits"))
        # the fleet and controllers run (the pod is admitted and defaulted), but nothing binds it
        c.wait_for(lambda: json.loads(c.kubectl("get", "pod", "waits", "-o", "json"))["spec"].get("serviceAccountName"),
                   what="pod admitted")
        assert node_of(c, "waits") is None
        assert not json.loads(c.kubectl("get", "pod", "waits", "-o", "json")).get("status", {}).get("conditions")
        sched = subprocess.Popen([sys.executable, "-m", "kubeling.cli.main", "scheduler", "--kubeconfig",
                                  str(c.kubeconfig), "--leader-elect=false"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert c.wait_for(lambda: node_of(c, "waits"), what="bound by the separate scheduler") == "node-1"
    finally:
        if sched is not None:
            sched.terminate()
            sched.wait(30)
        c.stop()


def test_no_loopback_composes_the_same_cluster_over_https(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "data", nodes=2, extra_args=["--no-loopback"])
    c.start()
    try:
        c.wait_for(lambda: c.kubectl("get", "nodes", "--no-headers").count(" Ready ") == 3, what="3 nodes Ready")
        c.kubectl("create", "-f", "-", input=pod("over-https"))
        assert c.wait_for(lambda: node_of(c, "over-https"), what="bound") in ("node-1", "node-2")
        c.wait_for(lambda: json.loads(c.kubectl("get", "pod", "over-https", "-o", "json"))
                   .get("status", {}).get("phase") == "Running", what="Running")
    finally:
        c.stop()


def test_unknown_component_is_refused(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "kubeling.cli.main", "up", "--data-dir", str(tmp_path),
                        "--disable", "kubelet"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Invalid value for '--disable'" in r.stderr


def test_malloc_tuning_applies_unless_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert malloctuning.tune() is (sys.platform == "linux")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert malloctuning.tune() is False
