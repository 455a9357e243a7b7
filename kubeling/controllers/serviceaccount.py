"""Every namespace gets a ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap.

Upstream splits this between the serviceaccounts controller and the root CA
certificate publisher; both are the same loop over namespaces here.
"""

from __future__ import annotations

import logging
from typing import Any

from kubeling.client.controller import run_controller
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import ApiError, Client, is_already_exists
from kubeling.client.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                       "guaranteed across distributions of Kubernetes clusters.")


class ServiceAccountController:
    def __init__(self, client: Client, factory: InformerFactory) -> None:
        self.client = client
        self.namespaces = factory.informer("namespaces")
        self.accounts = factory.informer("serviceaccounts", field_selector="metadata.name=default")
        self.configmaps = factory.informer("configmaps", field_selector="metadata.name=kube-root-ca.crt")
        self.queue = WorkQueue()
        self.namespaces.add_handler(lambda t, o, _old: self._enqueue(o["metadata"]["name"]) if t != "DELETED" else None)
        for inf in (self.accounts, self.configmaps):
            inf.add_handler(lambda t, o, _old: self._enqueue(o["metadata"].get("namespace")) if t == "DELETED" else None)

    def _enqueue(self, ns: str | None) -> None:
        if ns:
            self.queue.add(ns)

    async def run(self) -> None:
        for inf in (self.namespaces, self.accounts, self.configmaps):
            await inf.wait_synced()
        await run_controller("serviceaccount", self.queue, self.sync, workers=1)

    async def sync(self, ns_name: str) -> None:
        ns = self.namespaces.get(ns_name)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        if self.accounts.get("default", ns_name) is None:
            await self._create("serviceaccounts", ns_name,
                               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        ca = self.client.config.ca_pem
        if ca and self.configmaps.get("kube-root-ca.crt", ns_name) is None:
            await self._create("configmaps", ns_name, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": ca.decode() if isinstance(ca, bytes) else ca}})

    async def _create(self, res: str, ns: str, obj: Obj) -> None:
        try:
            await self.client.create(res, obj, namespace=ns)
        except ApiError as exc:
            if is_already_exists(exc) or exc.code == 403:
                return
            raise
