"""Every component as its own process: `kubeling apiserver` (SQLite), two leader-elected
`kubeling controller-manager`s, a `kubeling scheduler` and a `kubeling nodes` fleet.

A DaemonSet rolls out; then the leading controller manager is SIGKILLed, the other acquires the
Lease kube-system/kube-controller-manager and a further rollout completes under it.
The process helpers here are shared with test_ha.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
KUBELING = [sys.executable, "-m", "kubeling.cli.main"]
# short leader-election timers keep the takeover quick; test_ha.py uses upstream's defaults
FAST_ELECTION = ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
                 "--leader-elect-retry-period", "500ms"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 120, what: str = "condition",
             interval: float = 0.3, logs: Sequence[Proc] = ()) -> Any:
    """Poll until truthy; fail with ``what``, the last value and the processes' log tails."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last failure
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in logs)
    pytest.fail(f"timed out waiting for {what}; last value: {last!r}\n{tails}")


class Proc:
    """One `kubeling <command>` subprocess, logging to ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([*KUBELING, *self.args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def identity(self) -> str | None:
        """The leader-election identity the process announced on start."""
        try:
            m = re.search(r"leader election on \S+ as (\S+)", self.log_path.read_text(errors="replace"))
        except OSError:
            return None
        return m.group(1) if m else None


class ApiServerProc(Proc):
    def __init__(self, name: str, data_dir: Path, *, store: str = "sqlite://", pki_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        args = ["apiserver", "--data-dir", str(data_dir), "--port", str(self.port), "--store", store]
        if pki_dir is not None:
            args += ["--pki-dir", str(pki_dir)]
        super().__init__(name, args, data_dir.parent)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            return self.kubeconfig.exists() and kubectl(self.kubeconfig, "get", "--raw", "/readyz",
                                                        check=False) == "ok"
        wait_for(ready, timeout=60, what=f"{self.name} ready", logs=[self])


def kubectl(kubeconfig: Path, *args: str, check: bool = True, input: str | None = None,
            server: str | None = None) -> str:
    cmd = ["kubectl", "--kubeconfig", str(kubeconfig), *(["--server", server] if server else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}\n{r.stdout}")
    return r.stdout


def lease_holder(kubeconfig: Path, name: str, server: str | None = None) -> str | None:
    out = kubectl(kubeconfig, "-n", "kube-system", "get", "lease", name, "-o", "json", check=False, server=server)
    if not out:
        return None
    return (json.loads(out).get("spec") or {}).get("holderIdentity") or None


def daemonset_manifest(name: str, image: str, *, max_unavailable: str | int = 1) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": max_unavailable}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "agent", "image": image}]}}}})


def ds_status(kubeconfig: Path, name: str, server: str | None = None) -> dict[str, Any]:
    ds = json.loads(kubectl(kubeconfig, "get", "ds", name, "-o", "json", server=server))
    return {**(ds.get("status") or {}), "generation": ds["metadata"].get("generation")}


def rolled_out(kubeconfig: Path, name: str, n: int, server: str | None = None) -> bool:
    st = ds_status(kubeconfig, name, server)
    return (st.get("observedGeneration") == st["generation"] and st.get("desiredNumberScheduled") == n
            and st.get("updatedNumberScheduled") == n and st.get("numberAvailable") == n
            and st.get("numberReady") == n and st.get("currentNumberScheduled") == n)


def pod_images_by_node(kubeconfig: Path, app: str, server: str | None = None) -> dict[str, list[str]]:
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-l", f"app={app}", "-o", "json", server=server))["items"]
    out: dict[str, list[str]] = {}
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            continue
        out.setdefault(p["spec"].get("nodeName") or "", []).append(p["spec"]["containers"][0]["image"])
    return out


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("procs")
    api = ApiServerProc("apiserver", root / "api")
    procs: list[Proc] = [api]
    try:
        api.start()
        api.wait_ready()
        kc = str(api.kubeconfig)
        cm1 = Proc("cm1", ["controller-manager", "--kubeconfig", kc, *FAST_ELECTION], root).start()
        procs.append(cm1)
        wait_for(lambda: cm1.identity and lease_holder(api.kubeconfig, "kube-controller-manager") == cm1.identity,
                 what="cm1 leads", logs=procs)
        cm2 = Proc("cm2", ["controller-manager", "--kubeconfig", kc, *FAST_ELECTION], root).start()
        sched = Proc("scheduler", ["scheduler", "--kubeconfig", kc, *FAST_ELECTION], root).start()
        nodes = Proc("nodes", ["nodes", "--kubeconfig", kc, "--nodes", "3", "--stop-after", "200ms"], root).start()
        procs += [cm2, sched, nodes]
        yield {"api": api, "cm1": cm1, "cm2": cm2, "scheduler": sched, "nodes": nodes, "procs": procs}
    finally:
        for p in reversed(procs):
            p.stop()


def test_daemonset_rolls_out_across_processes(plane: dict[str, Any]) -> None:
    api, procs = plane["api"], plane["procs"]
    kc = api.kubeconfig

    def nodes_ready() -> bool:
        out = kubectl(kc, "get", "nodes", "--no-headers")
        return len(out.splitlines()) == 4 and all(" Ready " in line for line in out.splitlines())
    wait_for(nodes_ready, what="4 nodes Ready", logs=procs)
    kubectl(kc, "apply", "-f", "-", input=daemonset_manifest("agent", "agent:v1"))
    wait_for(lambda: rolled_out(kc, "agent", 3), what="agent:v1 on 3 nodes", logs=procs)
    wait_for(lambda: lease_holder(kc, "kube-scheduler") == plane["scheduler"].identity, what="scheduler lease",
             logs=procs)
    kubectl(kc, "set", "image", "ds/agent", "agent=agent:v2")
    wait_for(lambda: rolled_out(kc, "agent", 3), what="agent:v2 on 3 nodes", logs=procs)
    images = pod_images_by_node(kc, "agent")
    assert sorted(images) == ["node-1", "node-2", "node-3"]
    assert all(v == ["agent:v2"] for v in images.values()), images


def test_standby_controller_manager_takes_over(plane: dict[str, Any]) -> None:
    api, cm1, cm2, procs = plane["api"], plane["cm1"], plane["cm2"], plane["procs"]
    kc = api.kubeconfig
    assert lease_holder(kc, "kube-controller-manager") == cm1.identity
    wait_for(lambda: cm2.identity, what="cm2 started", logs=procs)
    assert cm2.identity != cm1.identity
    transitions = json.loads(kubectl(kc, "-n", "kube-system", "get", "lease", "kube-controller-manager",
                                     "-o", "json"))["spec"].get("leaseTransitions", 0)
    cm1.kill9()
    wait_for(lambda: lease_holder(kc, "kube-controller-manager") == cm2.identity, what="cm2 acquires the lease",
             logs=procs)
    lease = json.loads(kubectl(kc, "-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "json"))
    assert lease["spec"]["leaseTransitions"] == transitions + 1
    assert lease["spec"]["leaseDurationSeconds"] == 4
    # the new leader runs the DaemonSet controller
    kubectl(kc, "set", "image", "ds/agent", "agent=agent:v3")
    wait_for(lambda: rolled_out(kc, "agent", 3), what="agent:v3 on 3 nodes under cm2", logs=procs)
    assert all(v == ["agent:v3"] for v in pod_images_by_node(kc, "agent").values())


def test_graceful_stop_releases_the_lease(plane: dict[str, Any]) -> None:
    """A stopped leader gives the Lease up (upstream's ReleaseOnCancel), so nobody waits for expiry."""
    api, sched = plane["api"], plane["scheduler"]
    kc = api.kubeconfig
    assert lease_holder(kc, "kube-scheduler") == sched.identity
    sched.stop()
    wait_for(lambda: lease_holder(kc, "kube-scheduler") is None, what="scheduler lease released",
             logs=[sched])
