"""`kubectl create token`: the TokenRequest subresource, and the tokens it issues authenticating requests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cluster


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cl = Cluster(Path(tmp_path_factory.mktemp("kubeling")) / "data")
    cl.start()
    try:
        cl.wait_for(lambda: cl.kubectl_result("get", "sa", "default").returncode == 0, what="default SA")
        yield cl
    finally:
        cl.stop()


def with_token(c: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with only server, CA and the token: no kubeconfig credentials."""
    cfg = yaml.safe_load(c.kubeconfig.read_text())
    ca = c.data_dir / "pki" / "ca.crt"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["KUBECONFIG"] = "/dev/null"
    return subprocess.run(["kubectl", f"--server={cfg['clusters'][0]['cluster']['server']}",
                           f"--certificate-authority={ca}", f"--token={token}", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_create_token_authenticates_as_the_service_account(c: Cluster) -> None:
    token = c.kubectl("create", "token", "default").strip()
    assert token.count(".") == 2
    cl = claims(token)
    assert cl["sub"] == "system:serviceaccount:default:default"
    assert cl["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert cl["exp"] - cl["iat"] == 3600
    r = with_token(c, token, "get", "pods")
    assert r.returncode == 0, r.stderr
    r = with_token(c, token, "create", "configmap", "from-sa", "--from-literal=a=1")
    assert r.returncode == 0, r.stderr


def test_the_user_a_token_names() -> None:
    from kubeling.apiserver.tokens import sa_user

    assert sa_user("ns1", "robot", "u-1") == {
        "name": "system:serviceaccount:ns1:robot", "uid": "u-1",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"]}


def test_token_request_shape_and_validation(c: Cluster) -> None:
    c.kubectl("create", "namespace", "tok")
    c.kubectl("create", "serviceaccount", "robot", "-n", "tok")
    out = json.loads(c.kubectl("create", "--raw", "/api/v1/namespaces/tok/serviceaccounts/robot/token", "-f", "-",
                               input=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                                 "spec": {"audiences": ["vault"], "expirationSeconds": 7200}})))
    assert (out["kind"], out["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert out["spec"]["audiences"] == ["vault"] and out["spec"]["expirationSeconds"] == 7200
    assert out["status"]["expirationTimestamp"].endswith("Z")
    assert claims(out["status"]["token"])["kubernetes.io"]["namespace"] == "tok"
    r = c.kubectl_result("create", "token", "robot", "-n", "tok", "--duration", "1m")
    assert r.returncode != 0 and ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                                  "Invalid value: 60: may not specify a duration less than 10 minutes") in r.stderr
    r = c.kubectl_result("create", "token", "nobody", "-n", "tok")
    assert r.returncode != 0 and 'serviceaccounts "nobody" not found' in r.stderr


def test_unknown_expired_and_revoked_tokens_get_401(c: Cluster) -> None:
    r = with_token(c, "not-a-token", "get", "pods")
    assert r.returncode != 0 and "Unauthorized" in r.stderr
    token = c.kubectl("create", "token", "default").strip()
    head, body, sig = token.split(".")
    forged = dict(claims(token), exp=claims(token)["exp"] + 10**6)
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    r = with_token(c, f"{head}.{forged_body}.{sig}", "get", "pods")
    assert r.returncode != 0 and "Unauthorized" in r.stderr

    # an expired token, signed with the cluster's own key (issued an hour and a half ago for an hour)
    from kubeling.apiserver.tokens import ServiceAccountTokens
    from kubeling.storage import open_store

    c.stop()
    try:
        async def old_token() -> str:
            store = open_store("sqlite://", c.data_dir)
            await store.start()
            try:
                class _Server:
                    pass

                srv = _Server()
                srv.store = store  # type: ignore[attr-defined]
                sa = await store.get("/registry/serviceaccounts/default/default")
                import time
                tok, _ = await ServiceAccountTokens(srv).issue(  # type: ignore[arg-type]
                    sa, expiration_seconds=3600, audiences=["x"], now=time.time() - 5400)
                return tok
            finally:
                await store.close()

        expired = asyncio.run(old_token())
    finally:
        c.start()
    # the signing key lives in the store: the token issued before the restart still works
    assert with_token(c, token, "get", "pods").returncode == 0
    r = with_token(c, expired, "get", "pods")
    assert r.returncode != 0 and "Unauthorized" in r.stderr

    # deleting the ServiceAccount revokes its tokens
    c.kubectl("create", "serviceaccount", "temp")
    temp = c.kubectl("create", "token", "temp").strip()
    assert with_token(c, temp, "get", "pods").returncode == 0
    c.kubectl("delete", "serviceaccount", "temp")
    r = with_token(c, temp, "get", "pods")
    assert r.returncode != 0 and "Unauthorized" in r.stderr
