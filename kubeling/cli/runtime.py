"""Start and stop the pieces `kubeling up` composes.

The component table is one explicit list: name -> "module:Class". Each class
takes ``(client, factory)`` and has ``async run()``; it talks to the API server
only through that client.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kubeling.apiserver import certs
from kubeling.apiserver.bootstrap import bootstrap
from kubeling.apiserver.server import ApiServer, make_ssl_context

log = logging.getLogger(__name__)

# name, import path; order is start order
COMPONENTS: list[tuple[str, str]] = [
    ("garbagecollector", "kubeling.controllers.garbagecollector:GarbageCollector"),
    ("namespace", "kubeling.controllers.namespace:NamespaceController"),
    ("serviceaccount", "kubeling.controllers.serviceaccount:ServiceAccountController"),
    ("nodelifecycle", "kubeling.controllers.nodelifecycle:NodeLifecycleController"),
    ("daemonset", "kubeling.controllers.daemonset:DaemonSetController"),
    ("statefulset", "kubeling.controllers.statefulset:StatefulSetController"),
    ("podgc", "kubeling.controllers.podgc:PodGCController"),
    ("rollout", "kubeling.controllers.rollout:RolloutPlanController"),
    ("scheduler", "kubeling.scheduler:Scheduler"),
    ("nodes", "kubeling.nodes:NodeFleet"),
]
CONTROLLER_MANAGER = [n for n, _ in COMPONENTS if n not in ("scheduler", "nodes")]


@dataclass
class RunningApi:
    server: ApiServer
    runner: web.AppRunner
    store: Any

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.store.close()


@dataclass
class Running:
    client: Any
    factory: Any
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


async def start_apiserver(*, data_dir: Path, port: int, store_url: str, bind_address: str = "127.0.0.1") -> RunningApi:
    from kubeling.storage import open_store

    data_dir.mkdir(parents=True, exist_ok=True)
    pki = certs.ensure_pki(data_dir)
    store = open_store(store_url, data_dir)
    await store.start()
    server = ApiServer(store, tokens=certs.read_token_file(pki.tokens_file))
    await bootstrap(server.registry, ca_pem=pki.ca_cert.read_text())
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, bind_address, port, ssl_context=make_ssl_context(pki.serving_cert, pki.serving_key),
                       backlog=1024, reuse_address=True)
    await site.start()
    host = bind_address if bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
    certs.write_kubeconfig(data_dir / "kubeconfig", server=f"https://{host}:{port}", ca_cert=pki.ca_cert,
                           token=pki.admin_token)
    server.ready = True
    return RunningApi(server, runner, store)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


async def start_components(kubeconfig: Path, *, nodes: int | None, options: dict[str, dict[str, Any]] | None = None,
                           only: list[str] | None = None) -> Running:
    """Build the components (each with its own options), create the initial nodes, start them all."""
    from kubeling.client.config import ClientConfig
    from kubeling.client.informer import InformerFactory
    from kubeling.client.rest import Client

    client = Client(ClientConfig.from_kubeconfig(kubeconfig))
    factory = InformerFactory(client)
    running = Running(client, factory)
    instances: list[tuple[str, Any]] = []
    for name, path in COMPONENTS:
        if only is not None and name not in only:
            continue
        try:
            cls = _load(path)
        except (ImportError, AttributeError) as exc:
            log.info("component %s not available: %s", name, exc)
            continue
        kwargs = {k: v for k, v in (options or {}).get(name, {}).items() if v is not None}
        instances.append((name, cls(client, factory, **kwargs)))
    if nodes is not None and any(n == "nodes" for n, _ in instances):
        from kubeling.nodes import create_initial_nodes

        await create_initial_nodes(client, nodes)
    factory.start()
    for name, inst in instances:
        task = asyncio.create_task(_supervise(name, inst), name=f"component-{name}")
        running.tasks.append(task)
    # components that ask for informers lazily, in run(), get them started too
    await asyncio.sleep(0)
    factory.start()
    return running


async def _supervise(name: str, inst: Any) -> None:
    """Run a component; if it crashes, log and restart it after a pause (level-triggered: nothing lost)."""
    delay = 1.0
    while True:
        try:
            await inst.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a component crash must not take the control plane down
            log.exception("component %s crashed; restarting in %.0fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def stop_components(running: Running) -> None:
    for t in running.tasks:
        t.cancel()
    for t in running.tasks:
        with contextlib.suppress(BaseException):
            await t
    with contextlib.suppress(Exception):
        await running.factory.stop()
    with contextlib.suppress(Exception):
        await running.client.close()
