"""The ``kubeling_cluster`` pytest plugin, used by an operator test suite of its own (run by pytester):
the kubernetes client, lightkube and kr8s doing CRUD and watch on a custom resource, and a real kopf
operator (create/update/delete handlers, status, finalizers, an owned child, events, a timer)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER = r'''
import asyncio, threading, time
import kopf, pytest, yaml
from kopf.testing import KopfRunner
from kubernetes import client, config

CRD = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pets.zoo.example.com}
spec:
  group: zoo.example.com
  scope: Namespaced
  names: {plural: pets, singular: pet, kind: Pet}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {sound: {type: string}}}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
""")


def wait(pred, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met")


@pytest.fixture(scope="module")
def crd(kubeling_cluster):
    config.load_kube_config(str(kubeling_cluster.kubeconfig))
    client.ApiextensionsV1Api().create_custom_resource_definition(CRD)
    return kubeling_cluster


def test_fixture_basics(kubeling_cluster):
    assert kubeling_cluster.url.startswith("https://127.0.0.1:")
    ns = kubeling_cluster.namespace()
    config.load_kube_config(str(kubeling_cluster.kubeconfig))
    assert client.CoreV1Api().read_namespace(ns).metadata.name == ns
    names = kubeling_cluster.add_nodes(1, zone="z1")
    node = client.CoreV1Api().read_node(names[0])
    assert node.metadata.labels["zone"] == "z1"


def test_lightkube_crud_and_watch(crd):
    from lightkube import Client
    from lightkube.types import PatchType
    from lightkube.generic_resource import create_namespaced_resource

    Pet = create_namespaced_resource("zoo.example.com", "v1", "Pet", "pets")
    ns = crd.namespace()
    lk = Client()
    lk.create(Pet(metadata={"name": "rex", "namespace": ns}, spec={"sound": "woof"}))
    got = lk.get(Pet, "rex", namespace=ns)
    assert got.spec["sound"] == "woof"
    events = []
    for op, obj in lk.watch(Pet, namespace=ns, server_timeout=5):
        events.append((op, obj.metadata.name))
        break
    assert ("ADDED", "rex") in events
    lk.patch(Pet, "rex", {"spec": {"sound": "grr"}}, namespace=ns, patch_type=PatchType.MERGE)
    assert lk.get(Pet, "rex", namespace=ns).spec["sound"] == "grr"
    lk.delete(Pet, "rex", namespace=ns)


def test_kr8s_crud_and_watch(crd):
    import kr8s
    from kr8s.objects import new_class

    Pet = new_class(kind="Pet", version="zoo.example.com/v1", namespaced=True)
    ns = crd.namespace()
    api = kr8s.api(kubeconfig=str(crd.kubeconfig))
    pet = Pet({"metadata": {"name": "tom", "namespace": ns}, "spec": {"sound": "meow"}}, api=api)
    pet.create()
    pet.patch({"spec": {"sound": "purr"}})
    pet.refresh()
    assert pet.spec["sound"] == "purr"
    names = [p.name for p in api.get("pets.zoo.example.com", namespace=ns)]
    assert names == ["tom"]
    seen = []
    for event, obj in api.watch("pets.zoo.example.com", namespace=ns):
        seen.append((event, obj.name))
        break
    assert seen == [("ADDED", "tom")]
    pet.delete()


OPERATOR = """
import os
import kopf
from kubernetes import client, config

@kopf.on.login()
def login(**kwargs):
    return kopf.login_with_kubeconfig(**kwargs)

@kopf.on.startup()
def configure(settings, **_):
    settings.posting.level = 0
    settings.watching.server_timeout = 10

@kopf.on.create("zoo.example.com", "v1", "pets")
def created(spec, name, namespace, body, logger, **_):
    config.load_kube_config(os.environ['KUBECONFIG'])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-sound"},
          "data": {"sound": spec.get("sound", "")}}
    kopf.adopt(cm, owner=body)
    client.CoreV1Api().create_namespaced_config_map(namespace, cm)
    kopf.info(body, reason="Created", message="made a configmap")
    return {"child": name + "-sound"}

@kopf.on.update("zoo.example.com", "v1", "pets", field="spec.sound")
def updated(new, name, namespace, **_):
    config.load_kube_config(os.environ['KUBECONFIG'])
    client.CoreV1Api().patch_namespaced_config_map(name + "-sound", namespace, {"data": {"sound": new}})

@kopf.on.delete("zoo.example.com", "v1", "pets")
def deleted(name, namespace, **_):
    config.load_kube_config(os.environ['KUBECONFIG'])
    client.CoreV1Api().patch_namespace(namespace, {"metadata": {"annotations": {"deleted": name}}})

@kopf.timer("zoo.example.com", "v1", "pets", interval=0.5)
def tick(patch, **_):
    patch.status["ticked"] = True
"""


def test_kopf_operator_lifecycle(crd, tmp_path):
    (tmp_path / "op.py").write_text(OPERATOR)
    ns = crd.namespace()
    co = client.CustomObjectsApi()
    core = client.CoreV1Api()
    with KopfRunner(["run", "--standalone", "--namespace", ns, str(tmp_path / "op.py")], timeout=60) as runner:
        co.create_namespaced_custom_object("zoo.example.com", "v1", ns, "pets",
                                           {"apiVersion": "zoo.example.com/v1", "kind": "Pet",
                                            "metadata": {"name": "fido"}, "spec": {"sound": "woof"}})
        wait(lambda: core.read_namespaced_config_map("fido-sound", ns) if any(
            c.metadata.name == "fido-sound" for c in core.list_namespaced_config_map(ns).items) else None)
        pet = wait(lambda: (p := co.get_namespaced_custom_object("zoo.example.com", "v1", ns, "pets", "fido"))
                   .get("status", {}).get("created") and p)
        assert pet["status"]["created"] == {"child": "fido-sound"}
        assert pet["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        cm = core.read_namespaced_config_map("fido-sound", ns)
        assert cm.metadata.owner_references[0].name == "fido"
        wait(lambda: co.get_namespaced_custom_object("zoo.example.com", "v1", ns, "pets", "fido")
             .get("status", {}).get("ticked"))
        co.patch_namespaced_custom_object("zoo.example.com", "v1", ns, "pets", "fido", {"spec": {"sound": "arf"}})
        wait(lambda: core.read_namespaced_config_map("fido-sound", ns).data["sound"] == "arf")
        events = wait(lambda: [e for e in core.list_namespaced_event(ns).items if e.reason == "Created"])
        assert events[0].involved_object.name == "fido"
        co.delete_namespaced_custom_object("zoo.example.com", "v1", ns, "pets", "fido")
        wait(lambda: (core.read_namespace(ns).metadata.annotations or {}).get("deleted") == "fido")
        wait(lambda: not co.list_namespaced_custom_object("zoo.example.com", "v1", ns, "pets")["items"])
    assert runner.exception is None
'''


def test_operator_suite_with_kubeling_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_operator=INNER)
    result = pytester.runpytest_subprocess("-q", "--kubeling-nodes", "1")
    result.assert_outcomes(passed=4)
