"""Where the API server is and how to reach it: server URL(s), bearer token and trust roots.

Every component is configured the same way kubectl is: from a kubeconfig file, so a component can run
in its own process or on another machine against the same cluster. Only the fields kubeling's own
kubeconfigs use (and the common ones of real clusters) are read: the current context's cluster
``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify`` and the user's ``token``,
``tokenFile`` or client certificate.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The kubeconfig cannot be used (missing context, cluster or server)."""


@dataclass
class ClientConfig:
    """How to reach one API server.

    ``server`` may be a list or a comma-separated string of URLs; the client uses the first and
    the others are kept for failover.
    """

    server: str | list[str]
    token: str | None = None
    ca_pem: str | bytes | None = None
    insecure: bool = False
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    namespace: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def servers(self) -> list[str]:
        raw = self.server if isinstance(self.server, list) else self.server.split(",")
        return [s.strip().rstrip("/") for s in raw if s.strip()]

    def ssl_context(self) -> ssl.SSLContext | bool | None:
        """The ``ssl`` argument for aiohttp: None for plain HTTP, False to skip verification."""
        if not any(s.startswith("https://") for s in self.servers):
            return None
        if self.insecure:
            ctx: ssl.SSLContext | bool = False
            if self.client_cert_pem:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        else:
            ca = self.ca_pem.decode() if isinstance(self.ca_pem, bytes) else self.ca_pem
            ctx = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
        if self.client_cert_pem and isinstance(ctx, ssl.SSLContext):
            _load_client_cert(ctx, self.client_cert_pem, self.client_key_pem or self.client_cert_pem)
        return ctx

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None) -> ClientConfig:
        base = Path(path).expanduser()
        doc = yaml.safe_load(base.read_text()) or {}
        ctx_name = context or doc.get("current-context")
        if not ctx_name:
            raise ConfigError(f"{base}: no current-context set and no context given")
        ctx = _named(doc.get("contexts"), ctx_name, "context", base)
        cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster", base)
        user = _named(doc.get("users"), ctx["user"], "user", base) if ctx.get("user") else {}
        server = cluster.get("server")
        if not server:
            raise ConfigError(f"{base}: cluster {ctx.get('cluster')!r} has no server")
        return cls(
            server=server,
            token=_token(user, base.parent),
            ca_pem=_data_or_file(cluster, "certificate-authority", base.parent),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
            client_cert_pem=_data_or_file(user, "client-certificate", base.parent),
            client_key_pem=_data_or_file(user, "client-key", base.parent),
            namespace=ctx.get("namespace") or "default",
        )


def _named(entries: list[dict[str, Any]] | None, name: str, what: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry.get(what) or {}
    raise ConfigError(f"{path}: {what} {name!r} not found")


def _data_or_file(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return (base / Path(section[key]).expanduser()).read_bytes()
    return None


def _token(user: dict[str, Any], base: Path) -> str | None:
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        return (base / Path(user["tokenFile"]).expanduser()).read_text().strip()
    return None


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl only loads certificates from files; keep them in a private temp dir for the call.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        os.chmod(key_path, 0o600)
        ctx.load_cert_chain(cert_path, key_path)
