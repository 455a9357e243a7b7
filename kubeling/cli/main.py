"""`kubeling`: the command line. `kubeling up` runs the whole control plane in one process.

Every component still talks to the API server over HTTPS with a kubeconfig, so
`kubeling apiserver`, `kubeling controller-manager`, `kubeling scheduler` and
`kubeling nodes` can run the same components as separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click

from kubeling.cli import runtime

DEFAULT_DATA_DIR = Path(os.environ.get("KUBELING_HOME", "~/.kubeling")).expanduser()


def _parse_duration(value: str) -> float:
    value = value.strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return _parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration like 1s, 500ms or 2m", param, ctx)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _run(coro_factory) -> None:  # type: ignore[no-untyped-def]
    from kubeling.cli import malloctuning

    malloctuning.tune()  # TLS reads without an mmap each (see the module)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collections while starting: imports and the catalogue allocate mostly
    long-lived objects, and the ~140 collections they triggered cost 0.1-0.4 s of start-up. The API
    server's GC tuning collects and freezes once it serves (gctuning), and the collector is back on
    once everything has started."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _globs(text: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in text.split(",") if g.strip())


def component_options(*, stop_after: float, pull_delay: float = 0.0, fail_images: str = "",
                      crash_images: str = "", grace: float | None = None) -> dict[str, dict[str, object]]:
    return {
        "nodes": {"stop_after": stop_after, "pull_delay": pull_delay, "fail_images": _globs(fail_images),
                  "crash_images": _globs(crash_images),
                  "lease_duration": int(grace) if grace else None},
        "nodelifecycle": {"grace_period": grace},
    }


class _LazyGroup(click.Group):
    """A group whose heavier subcommands (rollout, why: rich and the rollout controller's modules)
    are imported only when used or listed, so `kubeling up` does not pay for them."""

    lazy = {"rollout": "kubeling.cli.rollout:rollout", "why": "kubeling.cli.rollout:why"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="kubeling")
def main() -> None:
    """kubeling: a Kubernetes-compatible control plane built around the DaemonSet."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True,
              help="Where the state, PKI and kubeconfig live.")
@click.option("--port", type=int, default=6443, show_default=True, help="HTTPS port on 127.0.0.1.")
@click.option("--nodes", type=int, default=2, show_default=True,
              help="Simulated worker nodes to create (plus one control-plane node); 0 for none.")
@click.option("--store", "store_url", default="sqlite://", show_default=True,
              help="sqlite:// (embedded, default) or etcd://HOST:PORT[,HOST:PORT...]")
@click.option("--stop-after", type=Duration(), default="1s", show_default=True,
              help="How long a simulated container takes to stop after deletion.")
@click.option("--pull-delay", type=Duration(), default="0s", show_default=True,
              help="How long a simulated image pull takes.")
@click.option("--fail-images", default="", help="Comma-separated image globs whose pulls fail on every node.")
@click.option("--crash-images", default="", help="Comma-separated image globs whose containers crash.")
@click.option("--node-monitor-grace-period", type=Duration(), default=None,
              help="How long a node may miss heartbeats before it is marked Unknown (default 40s).")
@click.option("--bind-address", default="127.0.0.1", show_default=True)
@click.option("--disable", "disabled", multiple=True, metavar="COMPONENT",
              type=click.Choice([n for n, _ in runtime.COMPONENTS]),
              help="Leave a component out (repeatable), e.g. to run `kubeling scheduler` as its own process.")
@click.option("--loopback/--no-loopback", default=True, show_default=True,
              help="Components call the API server in this process without the wire (as kube-apiserver's "
                   "loopback client); --no-loopback sends them over HTTPS, as separate processes do.")
@click.option("-v", "--verbose", count=True)
def up(data_dir: Path, port: int, nodes: int, store_url: str, stop_after: float, pull_delay: float,
       fail_images: str, crash_images: str, node_monitor_grace_period: float | None, bind_address: str,
       disabled: tuple[str, ...], loopback: bool, verbose: int) -> None:
    """Run the API server, controllers, scheduler and node fleet in the foreground."""
    _setup_logging(verbose)
    data_dir = data_dir.expanduser().resolve()

    async def go(stop: asyncio.Event) -> None:
        with _collector_paused():
            api = await runtime.start_apiserver(data_dir=data_dir, port=port, store_url=store_url,
                                                bind_address=bind_address)
            kubeconfig = data_dir / "kubeconfig"
            click.echo(f"kubeling is up: API server https://{bind_address}:{port} (Kubernetes v1.32)")
            click.echo(f"  export KUBECONFIG={kubeconfig}")
            click.echo("  kubectl get nodes")
            options = component_options(stop_after=stop_after, pull_delay=pull_delay, fail_images=fail_images,
                                        crash_images=crash_images, grace=node_monitor_grace_period)
            only = [n for n, _ in runtime.COMPONENTS if n not in disabled] if disabled else None
            components = await runtime.start_components(kubeconfig, nodes=nodes, options=options, only=only,
                                                        loopback=api.loopback() if loopback else None)
        try:
            await stop.wait()
        finally:
            await runtime.stop_components(components)
            await api.stop()

    _run(go)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--port", type=int, default=6443, show_default=True)
@click.option("--store", "store_url", default="sqlite://", show_default=True,
              help="sqlite:// (this server alone) or etcd://HOST:PORT[,HOST:PORT...] (shareable)")
@click.option("--pki-dir", type=click.Path(path_type=Path), default=None,
              help="Share this CA, serving certificate and token file (e.g. another API server's "
                   "<data-dir>/pki) so one kubeconfig works against every API server of the cluster.")
@click.option("--bind-address", default="127.0.0.1", show_default=True)
@click.option("-v", "--verbose", count=True)
def apiserver(data_dir: Path, port: int, store_url: str, pki_dir: Path | None, bind_address: str,
              verbose: int) -> None:
    """Run only the API server (writes <data-dir>/kubeconfig pointing at it)."""
    _setup_logging(verbose)

    async def go(stop: asyncio.Event) -> None:
        with _collector_paused():
            api = await runtime.start_apiserver(data_dir=data_dir.expanduser().resolve(), port=port,
                                                store_url=store_url, bind_address=bind_address, pki_dir=pki_dir)
        try:
            await stop.wait()
        finally:
            await api.stop()

    _run(go)


def _component_command(name: str, which: list[str], help_text: str, *, lease: str | None = None) -> None:
    """A command running some components against an API server given by kubeconfig (and --server).

    ``lease``: the component is leader-elected on ``kube-system/<lease>`` (--leader-elect, default on).
    """

    def cmd(kubeconfig: Path, server: str | None, stop_after: float, verbose: int, leader_elect: bool = False,
            leader_elect_lease_duration: float = 15.0, leader_elect_renew_deadline: float = 10.0,
            leader_elect_retry_period: float = 2.0, nodes: int | None = None, pull_delay: float = 0.0) -> None:
        _setup_logging(verbose)
        election = None
        if lease is not None and leader_elect:
            identity = f"{socket.gethostname()}_{uuid.uuid4()}"
            election = runtime.LeaderElection(lease, lease_duration=leader_elect_lease_duration,
                                              renew_deadline=leader_elect_renew_deadline,
                                              retry_period=leader_elect_retry_period, identity=identity)
            click.echo(f"leader election on kube-system/{lease} as {identity}", err=True)

        async def go(stop: asyncio.Event) -> None:
            comps = await runtime.start_components(Path(kubeconfig), nodes=nodes, only=which, servers=server,
                                                   options=component_options(stop_after=stop_after,
                                                                             pull_delay=pull_delay),
                                                   leader_election=election)
            try:
                await stop.wait()
            finally:
                with contextlib.suppress(Exception):
                    await runtime.stop_components(comps)

        _run(go)

    cmd.__doc__ = help_text
    if "nodes" in which:
        cmd = click.option("--pull-delay", type=Duration(), default="0s", show_default=True,
                           help="How long a simulated image pull takes.")(cmd)
        cmd = click.option("--nodes", type=int, default=None,
                           help="Also create node-1..node-N (and the control-plane node) if missing.")(cmd)
    if lease is not None:
        cmd = click.option("--leader-elect-retry-period", type=Duration(), default="2s", show_default=True,
                           help="How long candidates wait between tries to acquire or renew the Lease.")(cmd)
        cmd = click.option("--leader-elect-renew-deadline", type=Duration(), default="10s", show_default=True,
                           help="How long the leader retries renewing before it steps down.")(cmd)
        cmd = click.option("--leader-elect-lease-duration", type=Duration(), default="15s", show_default=True,
                           help="How long candidates wait after the last renewal before taking over.")(cmd)
        cmd = click.option("--leader-elect", type=click.BOOL, default=True, is_flag=False, flag_value=True,
                           show_default=True,
                           help=f"Run only while holding the Lease kube-system/{lease} "
                                "(--leader-elect=false for a single replica).")(cmd)
    cmd = click.option("-v", "--verbose", count=True)(cmd)
    cmd = click.option("--stop-after", type=Duration(), default="1s")(cmd)
    cmd = click.option("--server", default=None,
                       help="API server URL(s), comma-separated, overriding the kubeconfig's server; "
                            "requests fail over to the next on connection errors.")(cmd)
    cmd = click.option("--kubeconfig", type=click.Path(path_type=Path),
                       default=lambda: os.environ.get("KUBECONFIG", str(DEFAULT_DATA_DIR / "kubeconfig")))(cmd)
    main.command(name=name, help=help_text)(cmd)


_component_command("controller-manager", runtime.CONTROLLER_MANAGER, "Run the controllers.",
                   lease="kube-controller-manager")
_component_command("scheduler", ["scheduler"], "Run the scheduler.", lease="kube-scheduler")
_component_command("nodes", ["nodes"], "Run the simulated kubelet fleet.")



if __name__ == "__main__":  # pragma: no cover
    main()
