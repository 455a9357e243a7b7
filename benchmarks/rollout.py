"""Progressive rollouts at scale: a four-step RolloutPlan to Succeeded, and a bad image rolled back.

`kubeling up --nodes N` runs until every node is Ready; a DaemonSet (maxUnavailable 10%) and a
RolloutPlan beside it (steps 10%, 30%, 50%, 100%, no pauses, failurePolicy maxFailedNodes 5% with
action Rollback) are created with kubectl and left to settle. Then two phases, as a user would:

- ``kubectl set image`` to a good image: the clock runs until the plan's phase is Succeeded with
  the new revision as its stable one.
- ``kubectl set image`` to a tag starting with ``broken`` (the simulated fleet fails to pull it):
  the clock starts when the first daemon pod reports ErrImagePull / ImagePullBackOff and stops
  when the DaemonSet's template is back on the stable image and every node runs an updated,
  available pod (kubectl rollout status's condition). Detection (plan phase RolledBack) is
  reported too.

Progress is followed with watches (plan, DaemonSet, and in the second phase the daemon pods), so
the benchmark adds no polling; the issue's targets are 40 s and 30 s at 5,000 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks.daemonset import _Rows, kubectl, request_counts
from benchmarks.fleet import wait_all_ready
from benchmarks.harness import LOADGEN_CPU, SERVER_CPU, Api, Row, Server, can_pin, pinned_to, run_async

NAME = "rollout"
DESCRIPTION = "RolloutPlan: four steps without pauses to Succeeded; a broken image rolled back"
PLAN_TARGET_S = 40.0  # at 5,000 nodes
ROLLBACK_TARGET_S = 30.0
SIZES = {"full": [5000], "quick": [500], "tiny": [50]}
DS_NAME = "agent"
NAMESPACE = "default"
GOOD, NEXT, BROKEN = "busybox:1", "busybox:2", "busybox:broken-1"
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff"}
DS_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"
RP_PATH = f"/apis/rollouts.kubeling.io/v1alpha1/namespaces/{NAMESPACE}/rolloutplans"
POD_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"


def manifests() -> tuple[str, str]:
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": DS_NAME, "namespace": NAMESPACE},
          "spec": {"selector": {"matchLabels": {"app": DS_NAME}},
                   "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                   "template": {"metadata": {"labels": {"app": DS_NAME}},
                                "spec": {"containers": [{"name": "agent", "image": GOOD,
                                                         "resources": {"requests": {"cpu": "1m",
                                                                                    "memory": "1Mi"}}}]}}}}
    plan = {"apiVersion": "rollouts.kubeling.io/v1alpha1", "kind": "RolloutPlan",
            "metadata": {"name": DS_NAME, "namespace": NAMESPACE},
            "spec": {"targetRef": {"kind": "DaemonSet", "name": DS_NAME},
                     "steps": [{"nodes": "10%"}, {"nodes": "30%"}, {"nodes": "50%"}, {"nodes": "100%"}],
                     "maxUnavailable": "10%",
                     "failurePolicy": {"maxFailedNodes": "5%", "action": "Rollback"}}}
    return orjson.dumps(ds).decode(), orjson.dumps(plan).decode()


def image(ds: dict[str, Any]) -> str:
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def settled(ds: dict[str, Any]) -> bool:
    """kubectl rollout status's condition: every daemon pod the DaemonSet wants is updated and available.

    Not "== N nodes": on a loaded machine some simulated nodes may miss heartbeats and leave the
    DaemonSet's scope (unreachable taint); the desired count is reported instead.
    """
    meta, st = ds["metadata"], ds.get("status") or {}
    return (st.get("observedGeneration", 0) >= meta.get("generation", 0) and st.get("desiredNumberScheduled", 0) > 0
            and st.get("desiredNumberScheduled") == st.get("updatedNumberScheduled") == st.get("numberAvailable"))


def pull_failed(pod: dict[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in PULL_FAILURES:
            return True
    return False


async def follow(api: Api, path: str, rv: str, on_object: Callable[[dict[str, Any]], None], *,
                 query: str = "") -> None:
    """Stream a watch from ``rv``, calling ``on_object`` for every ADDED / MODIFIED object."""
    async for ev in api.watch(f"{path}?watch=1&resourceVersion={rv}{query}"):
        if ev.get("type") in ("ADDED", "MODIFIED"):
            on_object(ev["object"])


async def get_json(api: Api, path: str) -> dict[str, Any]:
    status, body = await api.request("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
    return orjson.loads(body)


class Progress:
    """The latest plan and DaemonSet seen on the watches, and the moments conditions first held."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.plan: dict[str, Any] = {}
        self.ds: dict[str, Any] = {}
        self.marks: dict[str, float] = {}
        self.checks: dict[str, Callable[[Progress], bool]] = {}
        self.changed = asyncio.Event()
        self.most_failed = 0  # the longest status.failedNodes seen
        self.images_seen: set[str] = set()  # template images the DaemonSet has had

    def on_plan(self, obj: dict[str, Any]) -> None:
        self.plan = obj
        self.most_failed = max(self.most_failed, len((obj.get("status") or {}).get("failedNodes") or []))
        self._check()

    def on_ds(self, obj: dict[str, Any]) -> None:
        self.ds = obj
        self.images_seen.add(image(obj))
        self._check()

    def on_pod(self, obj: dict[str, Any]) -> None:
        if "first_failure" not in self.marks and pull_failed(obj):
            self.marks["first_failure"] = time.perf_counter()
            self.changed.set()

    def _check(self) -> None:
        for name, cond in self.checks.items():
            if name not in self.marks and self.plan and self.ds and cond(self):
                self.marks[name] = time.perf_counter()
                self.changed.set()

    def status(self) -> dict[str, Any]:
        return self.plan.get("status") or {}

    async def wait(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while name not in self.marks:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                st, ds = self.status(), self.ds.get("status") or {}
                raise TimeoutError(f"{name} not reached in {timeout:g}s; plan {st.get('phase')} step "
                                   f"{st.get('currentStep')} updated {st.get('updatedNodes')}; DaemonSet updated "
                                   f"{ds.get('updatedNumberScheduled')} available {ds.get('numberAvailable')}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 5.0))
        return self.marks[name]


async def _measure(server: Server, n: int, rows: list[Row]) -> None:
    api = Api(server.client_config(), connections=4)
    big = n >= 5000
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_all_ready(api, n + 1, timeout=900)
        await asyncio.sleep(3)  # start-up work (first leases, taint removals) drains
        p = Progress(n)
        rv = (await get_json(api, DS_PATH + "?limit=1"))["metadata"]["resourceVersion"]
        tasks += [asyncio.create_task(follow(api, DS_PATH, rv, p.on_ds, query=f"&fieldSelector=metadata.name%3D{DS_NAME}")),
                  asyncio.create_task(follow(api, RP_PATH, rv, p.on_plan))]
        await asyncio.sleep(0.2)

        def settled_on(img: str) -> Callable[[Progress], bool]:
            return lambda q: (image(q.ds) == img and settled(q.ds) and q.status().get("phase") == "Succeeded"
                              and q.status().get("stableRevision") == q.status().get("updateRevision"))

        slow = max(600.0, n / 5)
        p.checks["created"] = settled_on(GOOD)
        t0 = time.perf_counter()
        for doc in manifests():
            await asyncio.to_thread(kubectl, server, "create", "-f", "-", input=doc)
        rows.append(Row(NAME, f"{n} nodes: create DaemonSet + plan to Succeeded",
                        await p.wait("created", slow) - t0, "s", note="the plan's first revision is stable at once"))
        stable = p.status()["stableRevision"]

        # Phase 1: a good image through four steps without pauses.
        p.checks["succeeded"] = lambda q: settled_on(NEXT)(q) and q.status().get("stableRevision") != stable
        req0 = await request_counts(api)
        cpu0 = server.stats.cpu_seconds()
        t0 = time.perf_counter()
        await asyncio.to_thread(kubectl, server, "set", "image", f"ds/{DS_NAME}", f"agent={NEXT}")
        try:
            t = await p.wait("succeeded", slow) - t0
        except TimeoutError as exc:
            rows.append(Row(NAME, f"{n} nodes: four-step plan to Succeeded", slow, "s",
                            target=("<", PLAN_TARGET_S) if big else None, note=str(exc)))
            return
        req = await request_counts(api)
        req.subtract(req0)
        cpu = server.stats.cpu_seconds() - cpu0
        desired = (p.ds.get("status") or {}).get("desiredNumberScheduled")
        rows.append(Row(NAME, f"{n} nodes: four-step plan to Succeeded", t, "s",
                        target=("<", PLAN_TARGET_S) if big else None,
                        note=f"{desired} daemon pods; {n / t:,.0f} pods replaced/s; {req.total() / n:.1f} requests per node; "
                             f"server CPU {cpu:.1f}s ({cpu / t * 100:.0f}% of a core)"))
        stable = p.status()["stableRevision"]

        # Phase 2: a broken image, rolled back to NEXT.
        rv = (await get_json(api, POD_PATH + "?limit=1"))["metadata"]["resourceVersion"]
        tasks.append(asyncio.create_task(follow(api, POD_PATH, rv, p.on_pod, query=f"&labelSelector=app%3D{DS_NAME}")))
        await asyncio.sleep(0.2)
        # the plan may pass through RolledBack quickly; the template going back is what counts
        p.checks["rolled_back_phase"] = lambda q: q.status().get("phase") == "RolledBack"
        p.checks["template_back"] = lambda q: BROKEN in q.images_seen and image(q.ds) == NEXT
        p.checks["recovered"] = lambda q: "template_back" in q.marks and image(q.ds) == NEXT and settled(q.ds)
        t0 = time.perf_counter()
        await asyncio.to_thread(kubectl, server, "set", "image", f"ds/{DS_NAME}", f"agent={BROKEN}")
        try:
            first = await p.wait("first_failure", slow)
            detected = await p.wait("template_back", slow)
            recovered = await p.wait("recovered", slow)
        except TimeoutError as exc:
            rows.append(Row(NAME, f"{n} nodes: broken image, first failure to rolled back", slow, "s",
                            target=("<", ROLLBACK_TARGET_S) if big else None, note=str(exc)))
            return
        st = p.status()
        rows.append(Row(NAME, f"{n} nodes: broken image, first failure to rolled back", recovered - first, "s",
                        target=("<", ROLLBACK_TARGET_S) if big else None,
                        note=f"set image to first failure {first - t0:.1f}s; template rolled back "
                             f"{detected - first:.1f}s after it (at most {p.most_failed} failed nodes listed; phase "
                             f"RolledBack {'seen' if 'rolled_back_phase' in p.marks else 'not seen'}); stable "
                             f"revision {stable} {'kept' if st.get('stableRevision') == stable else 'changed'}"))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await api.close()


def run(args: argparse.Namespace) -> list[Row]:
    counts = SIZES[getattr(args, "size", "full")]
    pin = getattr(args, "pin", True) and can_pin()
    store = getattr(args, "store", "sqlite://")
    rows: list[Row] = _Rows([Row(NAME, "setup", f"server {f'CPU {SERVER_CPU}' if pin else 'not pinned'}; store {store}; "
                           "one `kubeling up` process (API server, controllers, scheduler, fleet); plan steps "
                           "10/30/50/100%, maxUnavailable 10%, maxFailedNodes 5%, action Rollback")])
    with pinned_to(LOADGEN_CPU if pin else None):
        for n in counts:
            server = Server(store=store, cpu=SERVER_CPU if pin else None, nodes=n)
            server.start(timeout=300)
            try:
                run_async(_measure(server, n, rows))
            finally:
                server.cleanup()
    return list(rows)
