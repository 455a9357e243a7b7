"""`kubeling rollout status|promote|pause|abort|plan ds/NAME` and `kubeling why ds/NAME [NODE]`.

Each command talks to the API server with a kubeconfig, as kubectl does. The writes go to the
RolloutPlan only, and the RolloutPlan controller acts on them:

* ``pause``: ``spec.paused: true``;
* ``promote``: ``spec.paused`` cleared and the annotation ``rollouts.kubeling.io/promote`` set to
  ``<updateRevision>/<currentStep>`` (``<updateRevision>/full`` with ``--full``), which releases the
  current step's pause; keyed by revision, so it never promotes a later rollout;
* ``abort``: the annotation ``rollouts.kubeling.io/abort: <updateRevision>``: roll back now.

``plan`` (a what-if) and ``why`` only read: they compute with the same pure functions as the
controllers (``kubeling.controllers.rollout.steps`` and ``observe``).
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from kubeling.api.kubeling_kinds import ABORT_ANNOTATION, PROMOTE_ANNOTATION
from kubeling.client.config import ClientConfig
from kubeling.client.rest import ApiError, Client
from kubeling.controllers import history
from kubeling.controllers.rollout import steps
from kubeling.controllers.rollout.controller import DS_RESOURCE, PLAN_RESOURCE, current_revision
from kubeling.controllers.rollout.observe import AVAILABLE, observe

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "RolledBack", "Failed")


def _kubeconfig_default() -> str:
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path("~/.kube/config").expanduser())


def _target(ref: str) -> str:
    kind, _, name = ref.partition("/")
    if not name or kind.lower() not in ("ds", "daemonset", "daemonsets", "daemonset.apps", "daemonsets.apps"):
        raise click.BadParameter(f"expected ds/NAME, got {ref!r}")
    return name


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--kubeconfig", default=_kubeconfig_default, show_default="$KUBECONFIG or ~/.kube/config",
                      help="Path to the kubeconfig file.")(fn)
    fn = click.option("-n", "--namespace", default="default", show_default=True)(fn)
    return click.argument("target")(fn)


def _run(kubeconfig: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        client = Client(ClientConfig.from_kubeconfig(kubeconfig))
        try:
            return await body(client)
        except ApiError as exc:
            raise click.ClickException(exc.message or str(exc)) from exc
        finally:
            await client.close()
    return asyncio.run(go())


class _State:
    """Everything a command needs about one DaemonSet, read once."""

    def __init__(self, ds: Obj, plan: Obj | None, nodes: list[Obj], pods: list[Obj], revisions: list[Obj]):
        self.ds, self.plan, self.nodes, self.pods, self.revisions = ds, plan, nodes, pods, revisions
        cur = current_revision(ds, revisions)
        self.hash = history.revision_hash(cur) if cur else ""

    def revision_number(self, hash_: str | None) -> str:
        for r in self.revisions:
            if history.revision_hash(r) == hash_:
                return str(history.revision_number(r))
        return "?"


async def _read(client: Client, namespace: str, name: str, *, need_plan: bool = False) -> _State:
    try:
        ds = await client.get(DS_RESOURCE, name, namespace)
    except ApiError as exc:
        if exc.code == 404:
            raise click.ClickException(f'daemonsets.apps "{name}" not found') from exc
        raise
    uid = ds["metadata"]["uid"]

    def owned(items: list[Obj]) -> list[Obj]:
        return [o for o in items if any(r.get("uid") == uid and r.get("controller")
                                        for r in o["metadata"].get("ownerReferences") or [])]

    selector = ",".join(f"{k}={v}" for k, v in ((ds["spec"].get("selector") or {}).get("matchLabels") or {}).items())
    plans, nodes, pods, revs = await asyncio.gather(
        client.list(PLAN_RESOURCE, namespace), client.list("nodes"),
        client.list("pods", namespace, label_selector=selector or None),
        client.list(history.RESOURCE, namespace, label_selector=selector or None))
    plan = steps.plan_for(ds, plans["items"])
    if need_plan and plan is None:
        raise click.ClickException(f"no RolloutPlan in namespace {namespace} targets DaemonSet {name}")
    return _State(ds, plan, nodes["items"], owned(pods["items"]), owned(revs["items"]))


# ---- status --------------------------------------------------------------------------------------

def _bar(done: int, total: int) -> ProgressBar:
    return ProgressBar(total=max(total, 1), completed=done, width=30)


def status_view(state: _State) -> Table:
    plan = state.plan or {}
    st = plan.get("status") or {}
    obs = observe(state.plan, state.ds, state.nodes, state.pods, hash_=state.hash, now=time.time())
    all_steps = steps.steps_of(plan)
    step = int(st.get("currentStep") or 0)
    eligible = len(obs.order)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_column()
    name = state.ds["metadata"]["name"]
    grid.add_row("DaemonSet", name, "")
    grid.add_row("RolloutPlan", plan.get("metadata", {}).get("name", "<none>"), st.get("phase", ""))
    if state.plan is not None:
        grid.add_row("Step", f"{min(step + 1, len(all_steps))}/{len(all_steps)}",
                     f"{st.get('allowedNodes', 0)} of {eligible} node(s) allowed")
    stable, update = st.get("stableRevision"), state.hash
    on_update = len(obs.updated)
    grid.add_row(f"update rev {state.revision_number(update)}", _bar(on_update, eligible),
                 f"{on_update}/{eligible} updated, {len(obs.available_updated)} available")
    if stable and stable != update:
        on_stable = sum(1 for p in state.pods if (p["metadata"].get("labels") or {}).get(
            history.CONTROLLER_REVISION_HASH_LABEL) == stable and not p["metadata"].get("deletionTimestamp"))
        grid.add_row(f"stable rev {state.revision_number(stable)}", _bar(on_stable, eligible),
                     f"{on_stable}/{eligible}")
    if st.get("message"):
        grid.add_row("Message", st["message"], "")
    for node, (reason, message) in sorted(obs.failed.items()):
        grid.add_row("[red]failed[/red]", f"{node}: {reason}", message)
    return grid


def _done(state: _State) -> bool:
    st = (state.plan or {}).get("status") or {}
    if state.plan is None:
        s = state.ds.get("status") or {}
        return (s.get("updatedNumberScheduled") == s.get("desiredNumberScheduled") == s.get("numberAvailable"))
    return st.get("updateRevision") == state.hash and st.get("phase") in TERMINAL + ("Paused",)


@click.group()
def rollout() -> None:
    """Progressive DaemonSet rollouts under a RolloutPlan."""


@rollout.command()
@_common
@click.option("-w/-W", "--watch/--no-watch", default=True, help="Follow until the rollout stops.")
@click.option("--timeout", type=float, default=0, help="Give up watching after this many seconds (0: never).")
def status(target: str, namespace: str, kubeconfig: str, watch: bool, timeout: float) -> None:
    """Show the step, a progress bar per revision and failed nodes."""
    name = _target(target)
    console = Console()

    async def body(client: Client) -> None:
        state = await _read(client, namespace, name)
        if not watch:
            console.print(status_view(state))
            return
        deadline = time.monotonic() + timeout if timeout else None
        with Live(status_view(state), console=console, refresh_per_second=4) as live:
            while not _done(state) and (deadline is None or time.monotonic() < deadline):
                await asyncio.sleep(1)
                state = await _read(client, namespace, name)
                live.update(status_view(state))
        phase = ((state.plan or {}).get("status") or {}).get("phase")
        if phase in ("RolledBack", "Failed"):
            raise SystemExit(1)

    _run(kubeconfig, body)


async def _patch_plan(client: Client, plan: Obj, body: Obj) -> Obj:
    return await client.patch(PLAN_RESOURCE, plan["metadata"]["name"], body,
                              namespace=plan["metadata"]["namespace"], patch_type="merge")


@rollout.command()
@_common
@click.option("--full", is_flag=True, help="Skip the remaining steps and pauses: go to 100% now.")
def promote(target: str, namespace: str, kubeconfig: str, full: bool) -> None:
    """Release the current step's pause (or a pause), so the rollout moves on."""
    name = _target(target)

    async def body(client: Client) -> None:
        state = await _read(client, namespace, name, need_plan=True)
        st = state.plan.get("status") or {}  # type: ignore[union-attr]
        what = "full" if full else str(int(st.get("currentStep") or 0))
        await _patch_plan(client, state.plan, {"metadata": {"annotations": {  # type: ignore[arg-type]
            PROMOTE_ANNOTATION: f"{st.get('updateRevision') or state.hash}/{what}"}}, "spec": {"paused": None}})
        click.echo(f"daemonset.apps/{name} promoted" + (" to 100%" if full else f" (step {int(what) + 1})"))

    _run(kubeconfig, body)


@rollout.command()
@_common
def pause(target: str, namespace: str, kubeconfig: str) -> None:
    """Hold the rollout where it is (no further node is updated)."""
    name = _target(target)

    async def body(client: Client) -> None:
        state = await _read(client, namespace, name, need_plan=True)
        await _patch_plan(client, state.plan, {"spec": {"paused": True}})  # type: ignore[arg-type]
        click.echo(f"daemonset.apps/{name} paused")

    _run(kubeconfig, body)


@rollout.command()
@_common
def abort(target: str, namespace: str, kubeconfig: str) -> None:
    """Roll back to the stable revision now."""
    name = _target(target)

    async def body(client: Client) -> None:
        state = await _read(client, namespace, name, need_plan=True)
        st = state.plan.get("status") or {}  # type: ignore[union-attr]
        if not st.get("stableRevision") or st.get("stableRevision") == state.hash:
            raise click.ClickException(f"daemonset.apps/{name} has no rollout in progress")
        await _patch_plan(client, state.plan, {"metadata": {"annotations": {  # type: ignore[arg-type]
            ABORT_ANNOTATION: state.hash}}, "spec": {"paused": None}})
        click.echo(f"daemonset.apps/{name} rollout aborted: rolling back to revision "
                   f"{state.revision_number(st.get('stableRevision'))}")

    _run(kubeconfig, body)


# ---- plan (what-if) ------------------------------------------------------------------------------

def what_if(state: _State, new_ds: Obj | None) -> dict[str, Any]:
    """Which nodes each step would update, in order, the ineligible ones and why, and time estimates."""
    ds = new_ds or state.ds
    plan = copy.deepcopy(state.plan) if state.plan is not None else {"metadata": {"name": "<none>"},
                                                                      "spec": {"steps": [{"nodes": "100%"}]}}
    plan.pop("status", None)
    obs = observe(None, ds, state.nodes, state.pods, hash_="", now=time.time())
    eligible = [n for n in state.nodes if n["metadata"]["name"] in set(obs.order)]
    order = steps.rollout_order(plan, eligible)
    canaries = sum(1 for n in eligible if steps.is_canary(plan, n))
    observed = observe(None, state.ds, state.nodes, state.pods, hash_=state.hash, now=time.time()).start_seconds
    per_pod = statistics.median(observed) if observed else None
    spec = plan.get("spec") or {}
    from kubeling.controllers.daemonset.rolling import max_unavailable_count, scaled_value

    max_unavail = max_unavailable_count(ds, len(order)) or 1
    if spec.get("maxUnavailable") is not None:
        max_unavail = max(scaled_value(spec["maxUnavailable"], len(order), round_up=True), 1)
    rows, previous = [], 0
    for i, step in enumerate(steps.steps_of(plan)):
        count = steps.step_count(plan, i, eligible=len(order), canaries=canaries)
        nodes = order[previous:count]
        estimate = None if per_pod is None else math.ceil(len(nodes) / max_unavail) * per_pod
        rows.append({"step": i + 1, "nodes": step.get("nodes"), "total": count, "new": nodes,
                     "pause": (step.get("pause") or {}).get("duration", "until promoted")
                     if step.get("pause") is not None else "", "estimateSeconds": estimate})
        previous = max(previous, count)
    ineligible = [r.as_dict() for r in obs.reasons if not r.eligible]
    return {"steps": rows, "ineligible": ineligible, "podStartSeconds": per_pod}


def _apply_images(ds: Obj, images: tuple[str, ...]) -> Obj:
    new = copy.deepcopy(ds)
    containers = new["spec"]["template"]["spec"].get("containers") or []
    for item in images:
        cname, _, image = item.partition("=")
        found = [c for c in containers if c.get("name") == cname or cname == "*"]
        if not found or not image:
            raise click.BadParameter(f"no container {cname!r} in the template (use CONTAINER=IMAGE)")
        for c in found:
            c["image"] = image
    return new


@rollout.command("plan")
@_common
@click.option("-f", "--filename", type=click.Path(exists=True, dir_okay=False), help="The new DaemonSet manifest.")
@click.option("--image", "images", multiple=True, help="CONTAINER=IMAGE to change (repeatable).")
@click.option("-o", "--output", type=click.Choice(["text", "yaml"]), default="text")
def plan_cmd(target: str, namespace: str, kubeconfig: str, filename: str | None, images: tuple[str, ...],
             output: str) -> None:
    """What-if: the nodes each step would update, in order (writes nothing)."""
    name = _target(target)

    async def body(client: Client) -> dict[str, Any]:
        state = await _read(client, namespace, name)
        new_ds = None
        if filename:
            docs = [d for d in yaml.safe_load_all(Path(filename).read_text()) if d and d.get("kind") == "DaemonSet"]
            if not docs:
                raise click.ClickException(f"{filename}: no DaemonSet")
            new_ds = docs[0]
        if images:
            new_ds = _apply_images(new_ds or state.ds, images)
        return what_if(state, new_ds)

    result = _run(kubeconfig, body)
    if output == "yaml":
        click.echo(yaml.safe_dump(result, sort_keys=False))
        return
    console = Console()
    table = Table(title=f"rollout plan for daemonset.apps/{name}")
    for column in ("STEP", "NODES", "TOTAL", "PAUSE", "ESTIMATE", "UPDATES (in order)"):
        table.add_column(column)
    for row in result["steps"]:
        est = "-" if row["estimateSeconds"] is None else f"~{row['estimateSeconds']:.1f}s"
        shown = ", ".join(row["new"][:8]) + (f" +{len(row['new']) - 8} more" if len(row["new"]) > 8 else "")
        table.add_row(str(row["step"]), str(row["nodes"]), str(row["total"]), row["pause"], est, shown)
    console.print(table)
    if result["ineligible"]:
        bad = Table(title="not eligible")
        bad.add_column("NODE")
        bad.add_column("REASON")
        bad.add_column("MESSAGE")
        for r in result["ineligible"]:
            bad.add_row(r["node"], r["reason"], r["message"])
        console.print(bad)


# ---- why -----------------------------------------------------------------------------------------

@click.command()
@_common
@click.argument("node", required=False)
@click.option("-o", "--output", type=click.Choice(["text", "yaml"]), default="text")
def why(target: str, namespace: str, kubeconfig: str, node: str | None, output: str) -> None:
    """For every node (or one): should the daemon pod run there, and if it is not running or available, why."""
    name = _target(target)

    async def body(client: Client) -> list[dict[str, Any]]:
        state = await _read(client, namespace, name)
        obs = observe(state.plan, state.ds, state.nodes, state.pods, hash_=state.hash, now=time.time())
        rows = [{**r.as_dict(), "shouldRun": r.eligible} for r in obs.reasons if node is None or r.node == node]
        if node is not None and not rows:
            raise click.ClickException(f'nodes "{node}" not found')
        return rows

    rows = _run(kubeconfig, body)
    if output == "yaml":
        click.echo(yaml.safe_dump(rows, sort_keys=False))
        return
    table = Table(title=f"why: daemonset.apps/{name}")
    for column in ("NODE", "SHOULD RUN", "REASON", "MESSAGE"):
        table.add_column(column)
    for r in rows:
        style = "green" if r["reason"] == AVAILABLE else "yellow" if r["shouldRun"] else "dim"
        table.add_row(r["node"], "yes" if r["shouldRun"] else "no", f"[{style}]{r['reason']}[/{style}]",
                      r["message"])
    Console(width=200).print(table)
