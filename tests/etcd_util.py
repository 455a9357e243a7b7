"""Real etcd-server processes for tests: one member or a 3-member cluster on loopback ports.

Tests that need etcd call ``require_etcd()`` (a skip with the reason when the
``etcd`` binary is missing: Debian's etcd-server package, which scripts/bootstrap.sh
installs) and then ``EtcdCluster.start(tmp_dir, members=N)``. Every member gets
free loopback ports and its own data dir; ``stop()`` ends them all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ETCD = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)


def require_etcd() -> str:
    if ETCD is None:
        pytest.skip("the etcd binary is not installed (apt-get install etcd-server)")
    return ETCD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    client_scheme: str = "http"
    health_ssl: ssl.SSLContext | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def launch(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))

    def healthy(self) -> bool:
        try:
            url = f"{self.client_scheme}://{self.endpoint}/health"
            with urllib.request.urlopen(url, timeout=2, context=self.health_ssl) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


@dataclass
class EtcdCluster:
    members: list[Member] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        members: int = 1,
        timeout: float = 60,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> EtcdCluster:
        """``tls``: (ca, server cert, server key): clients must speak TLS and present a cert
        signed by ca; the health check uses the same server cert as its client cert."""
        binary = require_etcd()
        root.mkdir(parents=True, exist_ok=True)
        cluster = cls(
            [
                Member(f"m{i}", free_port(), free_port(), root / f"m{i}.etcd", root / f"m{i}.log")
                for i in range(members)
            ]
        )
        initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
        token = f"kubeling-test-{os.getpid()}-{cluster.members[0].client_port}"
        scheme = "https" if tls else "http"
        for m in cluster.members:
            m.client_scheme = scheme
            extra: list[str] = []
            if tls is not None:
                ca, cert, key = tls
                extra = ["--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file", str(ca),
                         "--client-cert-auth"]
                m.health_ssl = ssl.create_default_context(cafile=str(ca))
                m.health_ssl.load_cert_chain(str(cert), str(key))
            m.args = [
                binary,
                "--name", m.name,
                "--data-dir", str(m.data_dir),
                "--listen-client-urls", f"{scheme}://{m.endpoint}",
                "--advertise-client-urls", f"{scheme}://{m.endpoint}",
                "--listen-peer-urls", m.peer_url,
                "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                # Short raft timers: elections after a member dies take well under a second.
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--logger", "zap",
                "--log-level", "warn",
                *extra,
            ]
            m.launch()
        try:
            cluster.wait_healthy(timeout=timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The storage URL for open_store."""
        return "etcd://" + ",".join(self.endpoints)

    def wait_healthy(self, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for m in self.members:
            if m.proc is None:
                continue
            while not m.healthy():
                if m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {m.log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {m.name} not healthy: {m.log.read_text()[-2000:]}")
                time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL one member (its data dir stays)."""
        m = self.members[index]
        if m.proc is not None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(30)
            m.proc = None

    def restart(self, index: int) -> None:
        """Start a killed member again on its data dir and ports."""
        m = self.members[index]
        assert m.proc is None, "kill it first"
        m.launch()

    def stop(self) -> None:
        """End every member. SIGKILL: the data dirs are throw-away, and a leader on SIGTERM
        spends seconds trying to hand leadership to peers that are also stopping."""
        for i in range(len(self.members)):
            self.kill(i)
