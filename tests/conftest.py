"""Fixtures that start the real `kubeling up` and drive it with the real kubectl and clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeling.storage.watchcache import SHARED_EVENT_MODIFIED

ROOT = Path(__file__).resolve().parent.parent
KUBELING = [sys.executable, "-m", "kubeling.cli.main"]
# the project's shared material (seed manifests, real node agents' manifests) sits beside the repo;
# KUBELING_SHARED points elsewhere for a clone that lives somewhere else
SHARED = Path(os.environ.get("KUBELING_SHARED") or ROOT.parent / "shared")
# what the servers' log says when a watcher changed a shared watch object (the words after the key)
SHARED_EVENT_MARK = SHARED_EVENT_MODIFIED.rsplit("%d", 1)[1].strip()


def require_shared() -> Path:
    """SHARED, or skip the test (with why) in a clone that has no shared material beside it."""
    if not (SHARED / "manifests").is_dir():
        pytest.skip(f"{SHARED} (the project's shared manifests) is missing: clone beside it or set KUBELING_SHARED")
    return SHARED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A `kubeling up` subprocess in a temporary data dir."""

    def __init__(self, data_dir: Path, *, nodes: int = 0, extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.nodes = nodes
        self.extra_args = extra_args or []
        self.kubeconfig = data_dir / "kubeconfig"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"up-{self.port}.log"

    # ---- process control -----------------------------------------------------------------
    def start(self) -> None:
        # KUBELING_VERIFY_SHARED: the server fails an update that wrote into a shared stored object
        env = dict(os.environ, PYTHONUNBUFFERED="1", KUBELING_VERIFY_SHARED="1")
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._log_start = log.tell()
        self.proc = subprocess.Popen(
            [*KUBELING, "up", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--nodes", str(self.nodes), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubeling up exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.kubeconfig.exists() and self._readyz():
                return
            time.sleep(0.02)  # start-up takes about a second; a poll is one cheap local request
        raise RuntimeError(f"kubeling up did not become ready:\n{self.log_tail()}")

    def _readyz(self) -> bool:
        """/readyz answers 200 (a plain HTTPS request: spawning kubectl per poll cost ~0.1 s)."""
        import ssl
        import urllib.request

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/readyz", context=ctx, timeout=2) as r:
                return r.status == 200
        except OSError:  # not listening yet, or 500 while bootstrapping
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._check_shared_events()

    def _check_shared_events(self) -> None:
        """Fail if the server found a watch event's shared object changed (KUBELING_VERIFY_SHARED)."""
        with contextlib.suppress(OSError), self.log_path.open("rb") as f:
            f.seek(self._log_start)
            bad = [line for line in f.read().decode(errors="replace").splitlines() if SHARED_EVENT_MARK in line]
            self._log_start = f.tell()
            assert not bad, "a watcher changed a shared watch object:\n" + "\n".join(bad[:5])

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # ---- clients --------------------------------------------------------------------------
    def kubectl_result(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, input=input,
                              timeout=timeout)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        r = self.kubectl_result(*args, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}\n{r.stdout}")
        return r.stdout

    def api_client(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def client_config(self) -> Any:
        from kubeling.client.config import ClientConfig

        return ClientConfig.from_kubeconfig(self.kubeconfig)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60, what: str = "condition",
                 interval: float = 0.2) -> Any:
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
        pytest.fail(f"timed out waiting for {what}; last value: {last!r}\n--- server log ---\n{self.log_tail()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kubeling") / "data", nodes=0)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cluster_with_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("kubeling") / "data", nodes=2)
    c.start()
    try:
        yield c
    finally:
        c.stop()
