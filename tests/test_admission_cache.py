"""Built-in admission's look-ups (namespace, ServiceAccount) on a real SqliteStore, through its shared
decoded copy (peek) and, as for a store without one (etcd), through the copy admission decodes once per
resourceVersion: a changed, deleted or recreated object is always what the next create sees. Also the
objects admission adds (fresh per pod) and the defaults' shortcut for the token volume it adds."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from kubeling.api import errors
from kubeling.apiserver.admission import Admission
from kubeling.apiserver.bootstrap import bootstrap
from kubeling.apiserver.server import ApiServer
from kubeling.storage import SqliteStore

NS = "cache-a"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


class NoPeekStore:
    """The store as admission sees one without ``peek`` (the etcd store's read interface)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.raw_reads = 0

    async def get(self, key: str) -> Any:
        return await self._store.get(key)

    async def get_raw(self, key: str) -> Any:
        self.raw_reads += 1
        return await self._store.get_raw(key)


class RegistryView:
    """A registry whose store is swapped for a NoPeekStore; everything else is the real one's."""

    def __init__(self, registry: Any, store: Any) -> None:
        self._registry = registry
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": "pause"}], **spec}}


async def _cluster(tmp_path: Any) -> tuple[SqliteStore, Any]:
    store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
    await store.start()
    server = ApiServer(store, tokens={})
    await bootstrap(server.registry, ca_pem="x")
    cat = server.catalogue
    await server.registry.create(cat.lookup("", "v1", "namespaces"), None, {"metadata": {"name": NS}})
    await server.registry.create(cat.lookup("", "v1", "serviceaccounts"), NS, {"metadata": {"name": "default"}})
    return store, server


async def _replace(store: SqliteStore, key: str, change: Any) -> None:
    rev, _ = await store.get_raw(key)
    obj = copy.deepcopy(await store.get(key))
    change(obj)
    await store.update(key, obj, expected_revision=rev)


def _mounted(p: dict[str, Any]) -> bool:
    return any(v["name"].startswith("kube-api-access-") for v in p["spec"].get("volumes") or [])


@pytest.mark.parametrize("peek", [True, False], ids=["peek", "decoded-per-revision"])
def test_lookups_follow_every_change(tmp_path: Any, peek: bool) -> None:
    async def run() -> None:
        store, server = await _cluster(tmp_path)
        pods = server.catalogue.lookup("", "v1", "pods")
        nopeek = NoPeekStore(store)
        adm = Admission(server.registry if peek else RegistryView(server.registry, nopeek), server.catalogue)
        sa_key = f"/registry/serviceaccounts/{NS}/default"
        ns_key = f"/registry/namespaces/{NS}"

        async def admit(p: dict[str, Any]) -> dict[str, Any]:
            await adm.admit_create(pods, p, user=None)
            return p

        first = await admit(pod("a"))
        assert _mounted(first) and first["spec"]["serviceAccountName"] == "default"
        second = await admit(pod("b"))
        assert _mounted(second)
        assert second["spec"]["volumes"][0]["name"] != first["spec"]["volumes"][0]["name"]
        # the account stops automounting: the very next pod has no token volume
        await _replace(store, sa_key, lambda sa: sa.__setitem__("automountServiceAccountToken", False))
        assert not _mounted(await admit(pod("c")))
        # ... and mounts again once it says so
        await _replace(store, sa_key, lambda sa: sa.__setitem__("automountServiceAccountToken", True))
        assert _mounted(await admit(pod("d")))
        # the account is deleted: refused, with upstream's message
        await store.delete(sa_key)
        with pytest.raises(errors.StatusError) as exc:
            await admit(pod("e"))
        assert exc.value.code == 403
        assert 'serviceaccount "default" not found' in str(exc.value.message)
        # recreated (a new resourceVersion, automount off): seen at once
        await store.create(sa_key, {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
                                    "metadata": {"name": "default", "namespace": NS}})
        assert not _mounted(await admit(pod("f")))
        # the namespace starts terminating: nothing new may be created in it
        await _replace(store, ns_key, lambda ns: ns.__setitem__("status", {"phase": "Terminating"}))
        with pytest.raises(errors.StatusError) as exc:
            await admit(pod("g"))
        assert exc.value.code == 403 and "is being terminated" in str(exc.value.message)
        # gone altogether: NotFound
        await store.delete(ns_key)
        with pytest.raises(errors.StatusError) as exc:
            await admit(pod("h"))
        assert exc.value.code == 404
        if not peek:
            assert nopeek.raw_reads > 0  # the revision was read each time, not remembered
        await store.close()

    asyncio.run(run())


def test_pod_mounting_the_token_path_itself_and_tolerations(tmp_path: Any) -> None:
    async def run() -> None:
        store, server = await _cluster(tmp_path)
        pods = server.catalogue.lookup("", "v1", "pods")
        adm = Admission(server.registry, server.catalogue)
        own = pod("own")
        own["spec"]["containers"][0]["volumeMounts"] = [{"name": "mine", "mountPath": TOKEN_PATH}]
        await adm.admit_create(pods, own, user=None)
        assert own["spec"]["volumes"] == [] and len(own["spec"]["containers"][0]["volumeMounts"]) == 1
        p = pod("two", initContainers=[{"name": "i", "image": "pause"}])
        await adm.admit_create(pods, p, user=None)
        vol = p["spec"]["volumes"][0]
        mounts = [c["volumeMounts"] for c in p["spec"]["containers"] + p["spec"]["initContainers"]]
        assert mounts == [[{"name": vol["name"], "readOnly": True, "mountPath": TOKEN_PATH}]] * 2
        assert mounts[0][0] is not mounts[1][0]  # each container its own mount
        assert [t["key"] for t in p["spec"]["tolerations"]] == ["node.kubernetes.io/not-ready",
                                                                "node.kubernetes.io/unreachable"]
        p["spec"]["tolerations"][0]["tolerationSeconds"] = 1  # a pod's tolerations are its own
        q = pod("three")
        await adm.admit_create(pods, q, user=None)
        assert q["spec"]["tolerations"][0]["tolerationSeconds"] == 300
        assert q["spec"]["volumes"][0]["projected"]["sources"][0] is not vol["projected"]["sources"][0]
        await store.close()

    asyncio.run(run())


def test_defaults_of_the_token_volume_and_of_other_projected_volumes() -> None:
    from kubeling.api.defaults import apply_defaults

    admitted = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                       "fieldPath": "metadata.namespace"}}]}}]}}
    bare = copy.deepcopy(admitted)
    del bare["projected"]["defaultMode"]
    del bare["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
    del bare["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"]
    p = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}],
                                             "volumes": [copy.deepcopy(admitted), bare, {"name": "e"}]}}
    apply_defaults(("", "v1", "Pod"), p)
    vols = p["spec"]["volumes"]
    assert vols[0] == admitted  # already defaulted: left as it is
    assert vols[1]["projected"]["defaultMode"] == 420
    assert vols[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert vols[1]["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"] == "v1"
    assert vols[2] == {"name": "e", "emptyDir": {}}
