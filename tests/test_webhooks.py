"""Admission webhooks called over HTTPS with AdmissionReview v1, from a small server in the test."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SEEN: list[dict] = []


def _cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.crt").write_bytes(pem)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return pem


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        SEEN.append({"path": self.path, "request": req})
        response = {"uid": req["uid"], "allowed": True}
        labels = ((req.get("object") or {}).get("metadata") or {}).get("labels") or {}
        if self.path.startswith("/validate") and labels.get("deny") == "yes":
            response = {"uid": req["uid"], "allowed": False,
                        "status": {"code": 403, "message": "configmaps labelled deny=yes are refused"}}
        if self.path.startswith("/mutate"):
            patch = [{"op": "add", "path": "/metadata/labels", "value": {**labels, "mutated": "true"}}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wh")
    pem = _cert(tmp)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", base64.b64encode(pem).decode()
    server.shutdown()


def _config(kind: str, name: str, url: str, ca: str, resources: list[str], **extra) -> str:
    wh = {"name": f"{name}.example.com", "clientConfig": {"url": url, "caBundle": ca},
          "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                     "resources": resources}],
          "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5, **extra}
    return yaml.safe_dump({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                           "metadata": {"name": name}, "webhooks": [wh]})


def test_mutating_and_validating_webhooks(cluster, webhook_server):
    url, ca = webhook_server
    cluster.kubectl("apply", "-f", "-", input=_config(
        "MutatingWebhookConfiguration", "mutate", url + "/mutate", ca, ["configmaps"],
        objectSelector={"matchLabels": {"webhook": "on"}}))
    cluster.kubectl("apply", "-f", "-", input=_config(
        "ValidatingWebhookConfiguration", "validate", url + "/validate", ca, ["configmaps"],
        namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "default"}}))
    cluster.kubectl("create", "configmap", "plain", "--from-literal=a=b")
    cluster.kubectl("label", "configmap", "plain", "webhook=on")
    labels = json.loads(cluster.kubectl("get", "cm", "plain", "-o", "json"))["metadata"]["labels"]
    assert labels == {"webhook": "on", "mutated": "true"}
    reviews = [s for s in SEEN if s["path"].startswith("/mutate")]
    assert reviews and reviews[-1]["request"]["operation"] == "UPDATE"
    assert reviews[-1]["request"]["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert reviews[-1]["request"]["oldObject"]["metadata"]["name"] == "plain"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "denied", "labels": {"deny": "yes"}}}
    r = cluster.kubectl_result("apply", "-f", "-", input=yaml.safe_dump(cm))
    assert r.returncode != 0
    assert 'admission webhook "validate.example.com" denied the request: configmaps labelled deny=yes are refused' \
        in r.stderr
    cluster.kubectl("create", "namespace", "elsewhere")
    cm["metadata"]["namespace"] = "elsewhere"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(cm))  # namespaceSelector does not match


def test_unreachable_webhook_fail_blocks_only_what_it_covers(cluster, webhook_server):
    _, ca = webhook_server
    cluster.kubectl("apply", "-f", "-", input=_config(
        "ValidatingWebhookConfiguration", "down", "https://127.0.0.1:1/validate", ca, ["secrets"],
        failurePolicy="Fail"))
    cluster.kubectl("apply", "-f", "-", input=_config(
        "ValidatingWebhookConfiguration", "down-ignored", "https://127.0.0.1:1/validate", ca, ["services"],
        failurePolicy="Ignore"))
    r = cluster.kubectl_result("create", "secret", "generic", "s1", "--from-literal=a=b")
    assert r.returncode != 0
    assert 'failed calling webhook "down.example.com": failed to call webhook: Post ' \
           '"https://127.0.0.1:1/validate?timeout=5s"' in r.stderr
    cluster.kubectl("create", "service", "clusterip", "svc1", "--tcp=80:80")
    cluster.kubectl("create", "configmap", "unaffected")
    cluster.kubectl("delete", "validatingwebhookconfiguration", "down")
    cluster.kubectl("create", "secret", "generic", "s1", "--from-literal=a=b")
