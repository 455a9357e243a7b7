"""Start and stop the pieces `kubeling up` composes.

The component table is one explicit list: name -> "module:Class". Each class
takes ``(client, factory)`` and has ``async run()``; it talks to the API server
only through that client.

With leader election (``kubeling controller-manager`` and ``kubeling scheduler`` run as
their own processes, several replicas each) the components are built only once this
replica holds the Lease, on a fresh informer factory, and torn down when it loses the
Lease; the replica then campaigns again (upstream's binaries exit instead and rely on
their supervisor to restart them: same effect, no process restart needed here).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from kubeling.apiserver.server import ApiServer

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
    runner: web.ServerRunner
    store: Any
    gc_tuning: asyncio.Task[None] | None = None  # short GC pauses while serving (gctuning)

    _loopback: Any = None

    def loopback(self) -> Any:
        """The in-process loopback to this server (for components in the same process)."""
        if self._loopback is None:
            from kubeling.apiserver.loopback import Loopback

            self._loopback = Loopback(self.server)
        return self._loopback

    async def stop(self) -> None:
        if self._loopback is not None:
            await self._loopback.close()
        await self.runner.cleanup()
        await self.server.close()
        if self.gc_tuning is not None:
            from kubeling.apiserver import gctuning

            await gctuning.stop(self.gc_tuning)
        await self.store.close()


@dataclass
class Running:
    client: Any
    factory: Any
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    elector: Any = None


@dataclass(frozen=True)
class LeaderElection:
    """Upstream's --leader-elect-* settings; the Lease is ``kube-system/<lease_name>``."""

    lease_name: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""

    def holder_identity(self) -> str:
        # upstream: <hostname>_<uuid>, unique per process even on one machine
        return self.identity or f"{socket.gethostname()}_{uuid.uuid4()}"


def _share_pki(data_dir: Path, pki_dir: Path) -> None:
    """Make ``data_dir/pki`` the shared PKI directory (a symlink), so every API server of a
    cluster serves the same certificate and accepts the same tokens."""
    link = data_dir / "pki"
    pki_dir = pki_dir.expanduser().resolve()
    if link.is_symlink() or link.exists():
        if link.resolve() != pki_dir:
            raise ValueError(f"{link} already exists and is not {pki_dir}; use a fresh --data-dir")
        return
    pki_dir.mkdir(parents=True, exist_ok=True)
    link.symlink_to(pki_dir, target_is_directory=True)


async def start_apiserver(*, data_dir: Path, port: int, store_url: str, bind_address: str = "127.0.0.1",
                          pki_dir: Path | None = None) -> RunningApi:
    """Serve on ``port``; ``pki_dir``: the CA, serving certificate and tokens another API server of the
    same cluster made (created there when missing)."""
    # imported here, not at the top: `kubeling --help` and the component commands don't need them
    from aiohttp import web

    from kubeling.apiserver import certs, gctuning
    from kubeling.apiserver.bootstrap import bootstrap
    from kubeling.apiserver.server import ApiServer, make_ssl_context
    from kubeling.storage import open_store

    data_dir.mkdir(parents=True, exist_ok=True)
    if pki_dir is not None:
        _share_pki(data_dir, pki_dir)
    pki = certs.ensure_pki(data_dir)
    store = open_store(store_url, data_dir)
    await store.start()
    server = ApiServer(store, tokens=certs.read_token_file(pki.tokens_file))
    await bootstrap(server.registry, ca_pem=pki.ca_cert.read_text())
    await server.start()
    runner = web.ServerRunner(server.http_server(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, bind_address, port, ssl_context=make_ssl_context(pki.serving_cert, pki.serving_key),
                       backlog=1024, reuse_address=True)
    await site.start()
    host = bind_address if bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
    certs.write_kubeconfig(data_dir / "kubeconfig", server=f"https://{host}:{port}", ca_cert=pki.ca_cert,
                           token=pki.admin_token)
    server.ready = True
    return RunningApi(server, runner, store, gctuning.start())


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def client_config(kubeconfig: Path, servers: str | list[str] | None = None) -> Any:
    """The kubeconfig's credentials; ``servers`` (a list or comma-separated URLs) overrides its server,
    so a component can fail over between several API servers."""
    from kubeling.client.config import ClientConfig

    config = ClientConfig.from_kubeconfig(kubeconfig)
    if servers:
        config.server = servers if isinstance(servers, list) else [s for s in servers.split(",") if s.strip()]
    return config


async def start_components(kubeconfig: Path, *, nodes: int | None, options: dict[str, dict[str, Any]] | None = None,
                           only: list[str] | None = None, servers: str | list[str] | None = None,
                           leader_election: LeaderElection | None = None, loopback: Any = None) -> Running:
    """Build the components (each with its own options), create the initial nodes, start them all.

    ``servers`` overrides the kubeconfig's server with several (fail-over on connection errors).
    With ``leader_election`` the components run only while this process holds the Lease.
    ``loopback``: the API server is in this process; requests go to it without the wire.
    """
    from kubeling.client.informer import InformerFactory
    from kubeling.client.rest import Client

    client = Client(client_config(kubeconfig, servers), loopback=loopback)
    if leader_election is None:
        factory = InformerFactory(client)
        running = Running(client, factory)
        running.tasks += await _start_instances(client, factory, nodes=nodes, options=options, only=only)
        return running
    running = Running(client, None)
    running.tasks.append(asyncio.create_task(_campaign(running, leader_election, nodes=nodes, options=options,
                                                       only=only), name="leader-election"))
    return running


async def _start_instances(client: Any, factory: Any, *, nodes: int | None,
                           options: dict[str, dict[str, Any]] | None, only: list[str] | None) -> list[asyncio.Task[Any]]:
    if nodes is not None and (only is None or "nodes" in only):
        # the initial nodes first (registered Ready in one create each), before the other components'
        # modules are imported and built: a test waiting for Ready nodes does not wait for those
        from kubeling.nodes import create_initial_nodes

        await create_initial_nodes(client, nodes)
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
    factory.start()
    tasks = [asyncio.create_task(_supervise(name, inst), name=f"component-{name}") for name, inst in instances]
    # components that ask for informers lazily, in run(), get them started too
    await asyncio.sleep(0)
    factory.start()
    return tasks


async def _campaign(running: Running, le: LeaderElection, *, nodes: int | None,
                    options: dict[str, dict[str, Any]] | None, only: list[str] | None) -> None:
    """Campaign for the Lease; lead while holding it; after losing it, stop and campaign again."""
    from kubeling.client.informer import InformerFactory
    from kubeling.client.leaderelection import LeaderElector

    identity = le.holder_identity()

    async def lead() -> None:
        log.info("%s: leading %s/%s; starting %s", identity, le.namespace, le.lease_name, ", ".join(only or []))
        while True:  # runs until leadership is lost (cancelled); a failed start is retried
            factory = InformerFactory(running.client)
            running.factory = factory
            tasks: list[asyncio.Task[Any]] = []
            try:
                tasks = await _start_instances(running.client, factory, nodes=nodes, options=options, only=only)
                await asyncio.Event().wait()
            except Exception:  # noqa: BLE001 - holding the Lease while running nothing helps nobody
                log.exception("starting components failed; retrying")
            finally:
                await _stop_tasks(tasks)
                with contextlib.suppress(Exception):
                    await factory.stop()
                running.factory = None
            await asyncio.sleep(le.retry_period)

    while True:
        elector = LeaderElector(running.client, le.lease_name, le.namespace, identity, lead,
                                lease_duration=le.lease_duration, renew_deadline=le.renew_deadline,
                                retry_period=le.retry_period,
                                on_new_leader=lambda who: log.info("new leader of %s/%s: %s", le.namespace,
                                                                   le.lease_name, who))
        running.elector = elector
        try:
            await elector.run()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # stopping
            log.warning("%s: leader election for %s/%s interrupted by a stray cancellation", identity,
                        le.namespace, le.lease_name)
        except Exception:  # noqa: BLE001 - a campaign that dies silently leaves the Lease to nobody
            log.exception("%s: leader election for %s/%s failed", identity, le.namespace, le.lease_name)
            await asyncio.sleep(le.retry_period)
        log.warning("%s: leader election lost for %s/%s; controllers stopped, campaigning again", identity,
                    le.namespace, le.lease_name)


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


async def _stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t


async def stop_components(running: Running) -> None:
    # cancelling the leader-election task releases the Lease, so a standby takes over at once
    await _stop_tasks(running.tasks)
    if running.factory is not None:
        with contextlib.suppress(Exception):
            await running.factory.stop()
    with contextlib.suppress(Exception):
        await running.client.close()
