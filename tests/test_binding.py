"""pods/binding, as the scheduler (or anyone) posts it: nodeName set once, PodScheduled=True,
and the errors upstream answers. A cluster with no nodes, so nothing else binds the pods."""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client as k8s

from tests.conftest import Cluster


def _pod(c: Cluster, name: str) -> None:
    k8s.CoreV1Api(c.api_client()).create_namespaced_pod(
        "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}})


def _bind(c: Cluster, pod: str, target: object) -> subprocess.CompletedProcess[str]:
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": target}
    return c.kubectl_result("create", "--raw", f"/api/v1/namespaces/default/pods/{pod}/binding", "-f", "-",
                            input=json.dumps(body))


def test_binding_sets_the_node_and_the_scheduled_condition_once(cluster: Cluster) -> None:
    _pod(cluster, "bound")
    assert _bind(cluster, "bound", {"kind": "Node", "name": "node-x"}).returncode == 0
    pod = json.loads(cluster.kubectl("get", "pod", "bound", "-o", "json"))
    assert pod["spec"]["nodeName"] == "node-x"
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert [c["status"] for c in scheduled] == ["True"] and scheduled[0]["lastTransitionTime"]
    rv = pod["metadata"]["resourceVersion"]

    again = _bind(cluster, "bound", {"kind": "Node", "name": "node-y"})
    assert again.returncode != 0
    assert 'Error from server (Conflict): Operation cannot be fulfilled on pods "bound": ' \
           'pod bound is already assigned to node "node-x"' in again.stderr
    assert json.loads(cluster.kubectl("get", "pod", "bound", "-o", "json"))["metadata"]["resourceVersion"] == rv


@pytest.mark.parametrize(("target", "error"), [({"kind": "Node"}, "is invalid: target.name: Required value"),
                                               ({"name": 7}, "Error from server (BadRequest)"),
                                               ({"name": ["a"]}, "Error from server (BadRequest)")])
def test_a_binding_without_a_node_name_is_refused(cluster: Cluster, target: object, error: str) -> None:
    name = f"unbound-{len(str(target))}"
    _pod(cluster, name)
    refused = _bind(cluster, name, target)
    assert refused.returncode != 0 and error in refused.stderr
    assert "nodeName" not in json.loads(cluster.kubectl("get", "pod", name, "-o", "json"))["spec"]
