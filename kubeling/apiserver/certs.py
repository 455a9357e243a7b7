"""The cluster's PKI and credentials, made on first start and reused after.

A self-signed cluster CA signs the API server's serving certificate (for
127.0.0.1, ::1, localhost and kubernetes.default.svc names), and the admin user
gets a random bearer token. Everything secret is written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVING_NAMES = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"]
SERVING_IPS = ["127.0.0.1", "::1", "10.96.0.1"]


@dataclass(slots=True)
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_token: str
    tokens_file: Path


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeling-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (pki_dir / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_secret(pki_dir / "ca.key", _key_pem(key))
    return cert, key


def _make_serving(pki_dir: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (pki_dir / "apiserver.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                            + ca.public_bytes(serialization.Encoding.PEM))
    _write_secret(pki_dir / "apiserver.key", _key_pem(key))


def ensure_pki(data_dir: Path) -> Pki:
    """Create (once) the CA, serving certificate and admin token under data_dir/pki."""
    pki_dir = data_dir / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki_dir, 0o700)
    if not (pki_dir / "ca.crt").exists() or not (pki_dir / "ca.key").exists():
        ca, ca_key = _make_ca(pki_dir)
        _make_serving(pki_dir, ca, ca_key)
    elif not (pki_dir / "apiserver.crt").exists():
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        _make_serving(pki_dir, ca, ca_key)
    tokens = pki_dir / "tokens.csv"
    if not tokens.exists():
        # the static token file format upstream's --token-auth-file reads: token,user,uid,"group1,group2"
        _write_secret(tokens, f'{secrets.token_hex(32)},kubernetes-admin,admin,"system:masters"\n'.encode())
    admin = read_token_file(tokens)
    admin_token = next(t for t, u in admin.items() if u["name"] == "kubernetes-admin")
    return Pki(pki_dir / "ca.crt", pki_dir / "apiserver.crt", pki_dir / "apiserver.key", admin_token, tokens)


def read_token_file(path: Path) -> dict[str, dict[str, object]]:
    """Parse a static token file: token,user,uid[,"group1,group2"] per line."""
    import csv

    users: dict[str, dict[str, object]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or len(row) < 3:
                continue
            groups = [g for g in row[3].split(",") if g] if len(row) > 3 else []
            if "system:authenticated" not in groups:
                groups.append("system:authenticated")  # as upstream's AuthenticatedGroupAdder
            users[row[0].strip()] = {"name": row[1].strip(), "uid": row[2].strip(), "groups": groups}
    return users


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, token: str, name: str = "kubeling") -> None:
    import base64

    import yaml

    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode()}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }
    tmp = path.with_suffix(".tmp")
    _write_secret(tmp, yaml.safe_dump(cfg, sort_keys=False).encode())
    os.replace(tmp, path)
