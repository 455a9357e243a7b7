"""A pytest plugin: a real (simulated) Kubernetes cluster for operator tests, as envtest is for Go.

Installed as a ``pytest11`` entry point, it provides the session fixture ``kubeling_cluster``:
kubeling runs as a subprocess on a free port with SQLite in a temporary directory and two
simulated nodes (``--kubeling-nodes N`` or ``@pytest.mark.kubeling(nodes=N)`` on the first test
that uses it changes that). ``KUBECONFIG`` points at it for the session, so the kubernetes
client, kopf, kr8s and lightkube find it unchanged. ``namespace()`` hands out a fresh namespace
per test that is deleted when the test ends (``kubeling_namespace`` fixture).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KubelingCluster:
    """One kubeling control plane run as a subprocess."""

    def __init__(self, *, nodes: int = 2, data_dir: Path | None = None, port: int | None = None,
                 extra_args: list[str] | None = None) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kubeling-"))
        self.port = port or _free_port()
        self.nodes = nodes
        self.extra_args = list(extra_args or [])
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = self.data_dir / "kubeconfig"
        self._proc: subprocess.Popen[bytes] | None = None
        self._next_node = nodes + 1
        self._namespaces: list[str] = []
        self._client: tuple[dict[str, str], ssl.SSLContext] | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> KubelingCluster:
        """Start kubeling; return once /readyz answers and the simulated nodes are Ready."""
        cmd = [sys.executable, "-c", "from kubeling.cli.main import main; main()", "up",
               "--data-dir", str(self.data_dir), "--port", str(self.port), "--nodes", str(self.nodes),
               *self.extra_args]
        log = open(self.data_dir / "kubeling.log", "ab")  # noqa: SIM115 - kept open for the child
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"kubeling exited with {self._proc.returncode}:\n{self.log_tail()}")
            # short sleeps: start-up takes about a second and every poll is cheap
            if not ready and self.kubeconfig.exists():
                with contextlib.suppress(OSError), urllib.request.urlopen(
                        f"{self.url}/readyz", context=ctx, timeout=2) as r:
                    ready = r.status == 200
            if ready and (self.nodes <= 0 or self._ready_nodes_or_zero() >= self.nodes):
                return self
            time.sleep(0.01)
        raise TimeoutError(f"kubeling did not become ready in {timeout}s:\n{self.log_tail()}")

    def ready_nodes(self) -> int:
        """How many worker nodes (the control-plane node aside) are Ready."""
        items = self._request("GET", "/api/v1/nodes")["items"]
        return sum(1 for n in items
                   if _CONTROL_PLANE_ROLE not in (n["metadata"].get("labels") or {})
                   and any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (n.get("status") or {}).get("conditions") or []))

    def _ready_nodes_or_zero(self) -> int:
        try:
            return self.ready_nodes()
        except OSError:  # includes urllib's HTTPError: not serving nodes yet
            return 0

    def stop(self) -> None:
        self._client = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.data_dir / "kubeling.log").read_text(errors="replace").splitlines()[-n:])
        return ""

    def __enter__(self) -> KubelingCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- API helpers -----------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._client is None:  # the kubeconfig and TLS context once, not per request
            cfg = _read_kubeconfig(self.kubeconfig)
            ctx = ssl.create_default_context(cadata=cfg["ca"])
            ctx.check_hostname = False
            self._client = (cfg, ctx)
        cfg, ctx = self._client
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {cfg['token']}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def namespace(self, prefix: str = "test") -> str:
        """Create a fresh namespace and return its name; the plugin deletes it after the test."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._namespaces.append(name)
        self._request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
        return name

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._request("DELETE", f"/api/v1/namespaces/{name}")

    def add_nodes(self, n: int, **labels: str) -> list[str]:
        """Register ``n`` more nodes with ``labels``; returns their names."""
        names = []
        for _ in range(n):
            name = f"node-{self._next_node}"
            self._next_node += 1
            self._request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}})
            names.append(name)
        return names


def _read_kubeconfig(path: Path) -> dict[str, str]:
    import base64

    import yaml

    doc = yaml.safe_load(path.read_text())
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    ca = cluster.get("certificate-authority-data")
    ca_pem = base64.b64decode(ca).decode() if ca else Path(cluster["certificate-authority"]).read_text()
    return {"ca": ca_pem, "token": user.get("token", "")}


# ---- pytest wiring ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubeling")
    group.addoption("--kubeling-nodes", type=int, default=None,
                    help="simulated nodes of the kubeling_cluster fixture (default 2)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kubeling(nodes=N): options of the kubeling_cluster fixture")


@pytest.fixture(scope="session")
def kubeling_cluster(request: pytest.FixtureRequest) -> Iterator[KubelingCluster]:
    """A kubeling cluster for the whole session; ``KUBECONFIG`` points at it meanwhile."""
    nodes = request.config.getoption("--kubeling-nodes")
    if nodes is None:
        for item in request.session.items:
            marker = item.get_closest_marker("kubeling")
            if marker is not None and "nodes" in marker.kwargs:
                nodes = int(marker.kwargs["nodes"])
                break
    cluster = KubelingCluster(nodes=2 if nodes is None else nodes).start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        cluster.stop()


@pytest.fixture(autouse=True)
def _kubeling_namespaces_cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    """Namespaces a test made with ``kubeling_cluster.namespace()`` are deleted when it ends."""
    yield
    if "kubeling_cluster" in request.fixturenames:
        cluster = request.getfixturevalue("kubeling_cluster")
        while cluster._namespaces:
            cluster.delete_namespace(cluster._namespaces.pop())


@pytest.fixture
def kubeling_namespace(kubeling_cluster: KubelingCluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = kubeling_cluster.namespace()
    try:
        yield name
    finally:
        kubeling_cluster.delete_namespace(name)
