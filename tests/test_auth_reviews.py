"""The review resources (`kubectl auth whoami`, `kubectl auth can-i`, TokenReview, SubjectAccessReviews):
create-only, answered from the request and never stored, as upstream with AlwaysAllow authorization."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import Cluster
from tests.test_api_errors import Http

ISSUER = "https://kubernetes.default.svc.cluster.local"
SAR_PATH = "/apis/authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def c(cluster: Cluster) -> Cluster:
    cluster.wait_for(lambda: cluster.kubectl_result("get", "sa", "default").returncode == 0, what="default SA")
    cluster.kubectl("create", "serviceaccount", "robot")
    return cluster


@pytest.fixture(scope="module")
def http(c: Cluster) -> Http:
    return Http(c)


def admin_token(c: Cluster) -> str:
    return yaml.safe_load(c.kubeconfig.read_text())["users"][0]["user"]["token"]


def with_token(c: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = yaml.safe_load(c.kubeconfig.read_text())
    env = dict(os.environ, KUBECONFIG="/dev/null")
    return subprocess.run(["kubectl", f"--server={cfg['clusters'][0]['cluster']['server']}",
                           f"--certificate-authority={c.data_dir / 'pki' / 'ca.crt'}", f"--token={token}", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def create(c: Cluster, obj: dict) -> dict:
    return json.loads(c.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(obj)))


def table(text: str) -> list[list[str]]:
    return [line.split(None, 1) for line in text.strip().splitlines()]


# ---- authentication.k8s.io ---------------------------------------------------------------------------
def test_whoami_prints_upstreams_table(c: Cluster):
    assert table(c.kubectl("auth", "whoami")) == [
        ["ATTRIBUTE", "VALUE"], ["Username", "kubernetes-admin"], ["UID", "admin"],
        ["Groups", "[system:masters system:authenticated]"]]
    review = json.loads(c.kubectl("auth", "whoami", "-o", "json"))
    assert review["kind"] == "SelfSubjectReview" and review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["metadata"]["creationTimestamp"]
    assert review["status"] == {"userInfo": {"username": "kubernetes-admin", "uid": "admin",
                                             "groups": ["system:masters", "system:authenticated"]}}


def test_whoami_as_a_service_account(c: Cluster):
    token = c.kubectl("create", "token", "robot").strip()
    uid = json.loads(c.kubectl("get", "sa", "robot", "-o", "json"))["metadata"]["uid"]
    r = with_token(c, token, "auth", "whoami")
    assert r.returncode == 0, r.stderr
    assert table(r.stdout) == [
        ["ATTRIBUTE", "VALUE"], ["Username", "system:serviceaccount:default:robot"], ["UID", uid],
        ["Groups", "[system:serviceaccounts system:serviceaccounts:default system:authenticated]"]]


def test_token_review_authenticates_with_the_servers_authenticators(c: Cluster):
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": admin_token(c)}}
    got = create(c, review)
    assert got["spec"]["token"] == admin_token(c)  # the request, echoed with its status
    assert got["status"] == {"authenticated": True, "audiences": [ISSUER], "user": {
        "username": "kubernetes-admin", "uid": "admin", "groups": ["system:masters", "system:authenticated"]}}

    sa_token = c.kubectl("create", "token", "robot").strip()
    got = create(c, dict(review, spec={"token": sa_token}))["status"]
    assert got["authenticated"] and got["audiences"] == [ISSUER]
    assert got["user"]["username"] == "system:serviceaccount:default:robot"

    # audiences: the token's must meet the review's; the token file answers for the API server's only
    scoped = c.kubectl("create", "token", "robot", "--audience=vault").strip()
    got = create(c, dict(review, spec={"token": scoped, "audiences": ["vault", "other"]}))["status"]
    assert got["authenticated"] and got["audiences"] == ["vault"]
    got = create(c, dict(review, spec={"token": scoped}))["status"]
    assert got == {"user": {}, "error": f'token audiences ["vault"] is invalid for the target audiences ["{ISSUER}"]'}
    got = create(c, dict(review, spec={"token": admin_token(c), "audiences": ["vault"]}))["status"]
    assert got == {"user": {}, "error": "invalid bearer token"}

    got = create(c, dict(review, spec={"token": "not-a-token"}))["status"]
    assert got == {"user": {}, "error": "invalid bearer token"}


def test_token_review_needs_a_token(http: Http):
    r = http.req("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                 json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}})
    assert r.status_code == 400
    assert r.json()["message"] == "token is required for TokenReview in authentication"


# ---- authorization.k8s.io -----------------------------------------------------------------------------
def test_can_i(c: Cluster):
    assert c.kubectl("auth", "can-i", "create", "pods").strip() == "yes"
    assert c.kubectl("auth", "can-i", "delete", "daemonsets.apps", "-n", "kube-system").strip() == "yes"
    assert c.kubectl("auth", "can-i", "get", "/healthz").strip() == "yes"
    token = c.kubectl("create", "token", "robot").strip()
    assert with_token(c, token, "auth", "can-i", "list", "secrets").stdout.strip() == "yes"


def test_can_i_list(c: Cluster):
    rows = [line.split() for line in c.kubectl("auth", "can-i", "--list").strip().splitlines()]
    assert rows == [["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"],
                    ["*.*", "[]", "[]", "[*]"],
                    ["[*]", "[]", "[*]"]]


def test_self_subject_rules_review(http: Http):
    r = http.req("POST", f"{SAR_PATH}/selfsubjectrulesreviews", json={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}})
    assert r.status_code == 201
    assert r.json() == {
        "kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None}, "spec": {},
        "status": {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                   "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}}
    r = http.req("POST", f"{SAR_PATH}/selfsubjectrulesreviews", json={"spec": {}})
    assert r.status_code == 400 and r.json()["message"] == "no namespace on request"


def test_subject_access_reviews_allow(c: Cluster):
    attrs = {"verb": "get", "resource": "pods", "namespace": "default"}
    sar = create(c, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                     "spec": {"user": "bob", "groups": ["dev"], "resourceAttributes": attrs}})
    assert sar["status"] == {"allowed": True} and sar["spec"]["user"] == "bob"
    local = create(c, {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
                       "metadata": {"namespace": "default"}, "spec": {"user": "bob", "resourceAttributes": attrs}})
    assert local["status"] == {"allowed": True} and local["metadata"]["namespace"] == "default"
    ssar = create(c, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}})
    assert ssar["status"] == {"allowed": True}


def test_access_review_validation(c: Cluster, http: Http):
    r = c.kubectl_result("create", "-f", "-", input=json.dumps(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}}))
    assert r.returncode != 0
    assert 'The SubjectAccessReview "" is invalid' in r.stderr
    assert ('spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or '
            "resourceAttributes must be specified") in r.stderr
    assert 'spec.user: Invalid value: "": at least one of user or group must be specified' in r.stderr

    r = http.req("POST", f"{SAR_PATH}/selfsubjectaccessreviews", json={
        "metadata": {"name": "named"},
        "spec": {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/x", "verb": "get"}}})
    assert r.status_code == 422
    body = r.json()
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "SelfSubjectAccessReview"
    assert [(cause["field"], cause["reason"]) for cause in body["details"]["causes"]] == [
        ("spec.nonResourceAttributes", "FieldValueInvalid"), ("metadata", "FieldValueInvalid")]
    assert ('spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/x", '
            'Verb:"get"}: cannot be specified in combination with resourceAttributes') in body["message"]
    assert 'metadata: Invalid value: v1.ObjectMeta{Name:"named", ' in body["message"]
    assert body["message"].endswith(": must be empty]")

    r = http.req("POST", "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews", json={
        "spec": {"user": "bob", "resourceAttributes": {"verb": "get", "namespace": "other"},
                 "nonResourceAttributes": {"path": "/x", "verb": "get"}}})
    assert r.status_code == 422
    fields = [cause["field"] for cause in r.json()["details"]["causes"]]
    assert fields == ["spec.nonResourceAttributes", "spec.resourceAttributes.namespace", "spec.nonResourceAttributes"]
    assert 'spec.resourceAttributes.namespace: Invalid value: "other": must match metadata.namespace' \
        in r.json()["message"]


def test_reviews_cannot_be_read(http: Http):
    for plural in ("selfsubjectaccessreviews", "subjectaccessreviews", "selfsubjectrulesreviews"):
        r = http.req("GET", f"{SAR_PATH}/{plural}")
        assert r.status_code == 405 and r.json()["reason"] == "MethodNotAllowed"
        assert http.req("GET", f"{SAR_PATH}/{plural}/x").status_code == 405
    assert http.req("GET", "/apis/authentication.k8s.io/v1/tokenreviews").status_code == 405
    # and a verb a stored resource lacks: namespaces have no deletecollection upstream
    assert http.req("DELETE", "/api/v1/namespaces").status_code == 405


def test_discovery_lists_reviews_as_create_only(c: Cluster):
    rows = {line.split()[0]: line.split() for line in c.kubectl("api-resources", "-o", "wide").splitlines()[1:]}
    for plural, group, namespaced in [("selfsubjectreviews", "authentication.k8s.io/v1", "false"),
                                      ("tokenreviews", "authentication.k8s.io/v1", "false"),
                                      ("localsubjectaccessreviews", "authorization.k8s.io/v1", "true"),
                                      ("selfsubjectaccessreviews", "authorization.k8s.io/v1", "false"),
                                      ("selfsubjectrulesreviews", "authorization.k8s.io/v1", "false"),
                                      ("subjectaccessreviews", "authorization.k8s.io/v1", "false")]:
        assert rows[plural][1:3] == [group, namespaced]
        assert rows[plural][4:] == ["create"]
