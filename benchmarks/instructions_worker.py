"""The process benchmarks/instructions.py runs under ``valgrind --tool=callgrind``.

Not a benchmark by itself: it drives the real Registry (behind a real ApiServer, on a real
SqliteStore in a temporary directory, no HTTP) and brackets each measured phase between a call of
``os.getppid`` and one of ``os.getpgrp``. Callgrind is started with ``--zero-before=getppid
--dump-before=getpgrp`` (libc functions nothing else here calls; not functions of the interpreter,
which a distribution's statically linked, stripped, LTO build may have inlined or hidden), so each
phase becomes one dump holding exactly the instructions executed inside it; the phase's label is appended to LABELS once the phase is over (dump N <-> line N).

usage: instructions_worker.py {ops,requests,pieces,components} N LABELS ROOT
  ops       N pod creates by 32 concurrent clients, then N lease PUTs, N pod status PUTs, N label
            patches (the verbs a fleet of nodes and controllers keeps sending)
  requests  the whole request path around the handlers: N pod GETs and N pod creates through the
            in-process Loopback (the middlewares, request info, routing and metrics `kubeling up`
            components go through), then N pod GETs over plain HTTP to the aiohttp app
  pieces    each stage of one create/update, N times apiece on fresh bodies
  components  N pod creates through the loopback with only the ServiceAccount controller running,
            then N more with every `kubeling up` component too (one shared pod informer and its
            handlers): each phase lasts until the components' pod informer holds every pod, so the
            difference is what one new pod costs the in-process watchers
ROOT is the tree whose ``kubeling`` is measured (a checkout of another commit compares the two).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

CONCURRENCY = 32
NAMESPACE = "bench-a"
# a pod as the fleet leaves it once running: defaulted, admitted, bound, with a status
RUNNING_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "x", "labels": {"app": "bench"}, "namespace": NAMESPACE,
                 "uid": "fc5a12b2-fba8-4aed-a844-c102fb937338", "creationTimestamp": "2026-11-26T00:37:02Z",
                 "resourceVersion": "38"},
    "spec": {
        "schedulerName": "kubeling-bench",
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                        "volumeMounts": [{"name": "kube-api-access-9np4p", "readOnly": True,
                                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
        "terminationGracePeriodSeconds": 30, "enableServiceLinks": True, "serviceAccountName": "default",
        "serviceAccount": "default",
        "volumes": [{"name": "kube-api-access-9np4p", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
        "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
        "nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                       {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "startTime": "2024-01-01T00:00:00Z", "qosClass": "BestEffort",
        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "registry.k8s.io/pause:3.10",
                               "imageID": "x", "containerID": "containerd://abc", "started": True,
                               "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]},
}


def pod_body(name: str) -> dict[str, Any]:
    """What a client sends to create a pod: no defaults, no admission's additions."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"schedulerName": "kubeling-bench",
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


class Phases:
    """Brackets phases for callgrind and records their labels in order."""

    def __init__(self, labels_path: str) -> None:
        self.labels_path = labels_path
        open(labels_path, "w").close()

    def begin(self) -> None:
        gc.collect()  # garbage of the set-up is not the phase's to collect
        os.getppid()  # callgrind --zero-before=getppid

    def end(self, label: str) -> None:
        os.getpgrp()  # callgrind --dump-before=getpgrp
        with open(self.labels_path, "a") as f:
            f.write(label + "\n")


TOKEN = "bench-token"  # a static token (as pki/tokens.csv holds): what every request authenticates with


WARM_UP = "warm-up"  # a phase that is not reported: see _setup
WARM_CALLS = 20  # unmeasured calls of a stage before it is measured (the interpreter specialises after ~8)


async def _setup(phases: Phases) -> tuple[Any, Any, Any]:
    import orjson  # noqa: F401 - imported before any phase, as every other module

    from kubeling.apiserver.bootstrap import bootstrap
    from kubeling.apiserver.server import ApiServer
    from kubeling.storage import SqliteStore

    store = SqliteStore(os.path.join(tempfile.mkdtemp(prefix="kubeling-ir-"), "state.db"), compact_interval=0)
    await store.start()
    server = ApiServer(store, tokens={TOKEN: {"name": "bench", "uid": "bench",
                                              "groups": ["system:masters", "system:authenticated"]}})
    reg = server.registry
    await bootstrap(reg, ca_pem="x")
    if hasattr(server, "start"):  # (trees before it had no start-up hooks to run)
        await server.start()
    cat = server.catalogue
    await reg.create(cat.lookup("", "v1", "namespaces"), None, {"metadata": {"name": NAMESPACE}})
    await reg.create(cat.lookup("", "v1", "serviceaccounts"), NAMESPACE, {"metadata": {"name": "default"}})
    # the first dump of a process also counts work still finishing from the set-up (the store's
    # writer thread, ~3-5M Ir): a throw-away phase takes it, so every reported phase is its own
    phases.begin()
    await asyncio.sleep(0.3)
    phases.end(WARM_UP)
    return store, server, reg


async def _workers(n: int, fn: Callable[[int], Awaitable[None]], start: int = 0) -> None:
    it = iter(range(start, start + n))

    async def worker() -> None:
        for i in it:
            await fn(i)
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _warm_then_measure(phases: Phases, label: str, fn: Callable[[int], Awaitable[None]], *,
                             n: int, warm: int) -> None:
    """``warm`` unmeasured calls of ``fn`` (caches filled, bytecode specialised), then ``n`` as one phase."""
    await _workers(warm, fn)
    phases.begin()
    await _workers(n, fn, warm)
    phases.end(label)


async def ops(n: int, phases: Phases) -> None:
    """Whole verbs through the Registry, as the HTTP handlers call it (the response encoded too)."""
    import orjson

    from kubeling.apiserver.gctuning import keep_collections_short

    store, server, reg = await _setup(phases)
    cat = server.catalogue
    pods = cat.lookup("", "v1", "pods")
    leases = cat.lookup("coordination.k8s.io", "v1", "leases")
    gct = asyncio.get_running_loop().create_task(keep_collections_short())  # as the server runs it
    await asyncio.sleep(0)
    # the first WARM pods warm every cache (compiled schema checks, memoised names) outside the phases;
    # the n after them are measured
    warm = CONCURRENCY
    names = [f"w-{i}" for i in range(warm)] + [f"p-{i}" for i in range(n)]
    bodies = [orjson.dumps(pod_body(name)) for name in names]

    measure = functools.partial(_warm_then_measure, phases, n=n, warm=warm)

    async def create(i: int) -> None:
        obj, _ = await reg.create(pods, NAMESPACE, orjson.loads(bodies[i]))
        orjson.dumps(obj)

    await measure("pod create", create)

    nl = 100  # leases, each renewed by PUTting the last object read with a new renewTime
    for i in range(nl):
        await reg.create(leases, NAMESPACE, {"metadata": {"name": f"node-{i}"}, "spec": {
            "holderIdentity": f"node-{i}", "leaseDurationSeconds": 40,
            "renewTime": "2024-01-01T00:00:00.000000Z"}})
    current: dict[str, Any] = {}

    async def lease_put(i: int) -> None:
        name = f"node-{i % nl}"
        obj = current.get(name)
        if obj is None:
            obj = await reg.get(leases, NAMESPACE, name)
        body = orjson.loads(orjson.dumps(obj))
        body["spec"]["renewTime"] = f"2024-01-01T00:00:{i % 60:02d}.{i:06d}Z"
        out, _ = await reg.update(leases, NAMESPACE, name, body)
        orjson.dumps(out)
        current[name] = out

    await measure("lease PUT", lease_put)

    async def status_put(i: int) -> None:  # the kubelet's: read, replace the status, PUT /status
        obj = await reg.get(pods, NAMESPACE, names[i])
        body = orjson.loads(orjson.dumps(obj))
        body["status"] = {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "hostIP": "10.0.0.1", "podIP": f"10.1.{i // 250}.{i % 250}",
            "startTime": "2024-01-01T00:00:00Z", "qosClass": "BestEffort"}
        out, _ = await reg.update(pods, NAMESPACE, names[i], body, subresource="status")
        orjson.dumps(out)

    await measure("pod status PUT", status_put)

    def add_label(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"].setdefault("labels", {})["round"] = "two"
        return o

    async def patch(i: int) -> None:  # a patch's read-mutate-write
        out, _ = await reg.guaranteed_update(pods, NAMESPACE, names[i], add_label)
        orjson.dumps(out)

    await measure("pod patch", patch)
    gct.cancel()
    await store.close()


async def requests(n: int, phases: Phases) -> None:
    """Pod GETs and creates through the whole request path: what the server spends around the handler
    (middlewares, authentication, request info, routing, metrics, the loopback's own work)."""
    import orjson

    from kubeling.apiserver.gctuning import keep_collections_short
    from kubeling.apiserver.loopback import Loopback

    store, server, reg = await _setup(phases)
    server.ready = True
    pods = server.catalogue.lookup("", "v1", "pods")
    gct = asyncio.get_running_loop().create_task(keep_collections_short())
    loopback = Loopback(server)
    headers = {"User-Agent": "kubeling/bench", "Accept": "application/json",
               "Authorization": f"Bearer {TOKEN}"}
    post_headers = {**headers, "Content-Type": "application/json"}
    warm = CONCURRENCY
    names = [f"g-{i}" for i in range(warm + n)]
    for name in names:  # the pods the GETs read
        await reg.create(pods, NAMESPACE, pod_body(name))
    collection = f"/api/v1/namespaces/{NAMESPACE}/pods"

    measure = functools.partial(_warm_then_measure, phases, n=n, warm=warm)

    async def get(i: int) -> None:
        status, _, body, _ = await loopback.request("GET", f"{collection}/{names[i]}", params=None,
                                                    headers=headers, body=None, timeout=None)
        assert status == 200, body

    await measure("loopback pod GET", get)
    bodies = [orjson.dumps(pod_body(f"l-{i}")) for i in range(warm + n)]

    async def create(i: int) -> None:
        status, _, body, _ = await loopback.request("POST", collection, params=None, headers=post_headers,
                                                    body=bodies[i], timeout=None)
        assert status == 201, body

    await measure("loopback pod create", create)
    await _http_gets(server, names, measure)
    await loopback.close()
    gct.cancel()
    await store.close()


async def _http_gets(server: Any, names: list[str],
                     measure: Callable[[str, Callable[[int], Awaitable[None]]], Awaitable[None]]) -> None:
    """Pod GETs over HTTP/1.1 keep-alive (no TLS) to the server's aiohttp server, one connection per client; the
    client is a few lines on asyncio streams, so the count is mostly the server's."""
    from aiohttp import web

    if hasattr(server, "http_server"):
        runner: web.BaseRunner = web.ServerRunner(server.http_server())
    else:  # a tree from before the low-level server
        runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(i: int) -> None:
        if free:
            conn = free.pop()
        else:
            conn = await asyncio.open_connection("127.0.0.1", port)
            conns.append(conn)
        reader, writer = conn
        writer.write(f"GET /api/v1/namespaces/{NAMESPACE}/pods/{names[i]} HTTP/1.1\r\nHost: bench\r\n"
                     f"User-Agent: kubeling/bench\r\nAccept: application/json\r\n"
                     f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        free.append(conn)

    await measure("HTTP pod GET (no TLS)", get)
    for _, writer in conns:
        writer.close()
    await runner.cleanup()


async def pieces(n: int, phases: Phases) -> None:
    """Each stage of the write path alone, on fresh copies of a body (prepared outside the bracket)."""
    import orjson

    from kubeling.storage.codec import encode, materialize

    store, server, reg = await _setup(phases)
    pods = server.catalogue.lookup("", "v1", "pods")
    body = orjson.dumps(pod_body("x"))
    running = orjson.dumps(RUNNING_POD)
    created, _ = await reg.create(pods, NAMESPACE, orjson.loads(body))
    created_bytes = orjson.dumps(created)
    strategy = reg.strategies.strategy_for(pods)

    def received() -> Any:  # the body as create has it when the schema walk sees it
        o = orjson.loads(body)
        reg._check_identity(pods, o, NAMESPACE)
        return o

    def defaulted() -> Any:  # ... and when admission sees it
        o = received()
        reg.defaults.apply_defaults(pods, o)
        strategy.prepare_for_create(o)
        return o

    def run(coro: Any) -> Any:  # admission awaits nothing that suspends: drive it without a loop
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError("admission suspended")

    old_running = orjson.loads(running)
    stored = encode(orjson.loads(running))

    def piece(label: str, fn: Callable[[Any], Any], prep: Callable[[], Any] | None = None) -> None:
        for _ in range(WARM_CALLS):  # first calls compile, memoise and specialise bytecode: not measured
            fn(prep() if prep else None)
        args = [prep() if prep else None for _ in range(n)]
        phases.begin()
        for a in args:
            fn(a)
        phases.end(label)

    piece("schema walk: create body", lambda o: reg.schema.validate(pods, o), received)
    piece("schema walk: running pod", lambda o: reg.schema.validate(pods, o), lambda: orjson.loads(running))
    piece("defaults: create body", lambda o: reg.defaults.apply_defaults(pods, o), received)
    piece("defaults: running pod", lambda o: reg.defaults.apply_defaults(pods, o), lambda: orjson.loads(running))
    piece("prepare for create", strategy.prepare_for_create, received)
    piece("admission: create", lambda o: run(reg.admission.admit_create(pods, o, user=None)), defaulted)
    piece("validation: created pod", strategy.validate, lambda: orjson.loads(created_bytes))
    piece("validation: running pod", strategy.validate, lambda: orjson.loads(running))
    piece("validation: running pod update", lambda o: strategy.validate_update(o, old_running),
          lambda: orjson.loads(running))
    piece("encode for storage", encode, lambda: orjson.loads(running))
    piece("decode from storage", lambda _: materialize(stored, 5))
    await store.close()


async def components(n: int, phases: Phases) -> None:
    """Pod creates as `kubeling up` serves them, without and then with its in-process components."""
    import yaml

    from kubeling.apiserver.gctuning import keep_collections_short
    from kubeling.apiserver.loopback import Loopback
    from kubeling.cli.runtime import COMPONENTS, start_components, stop_components

    store, server, reg = await _setup(phases)
    server.ready = True
    gct = asyncio.get_running_loop().create_task(keep_collections_short())
    loopback = Loopback(server)
    kubeconfig = os.path.join(tempfile.mkdtemp(prefix="kubeling-ir-"), "kubeconfig")
    with open(kubeconfig, "w") as f:  # every request goes through the loopback: the address is never dialled
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                        "users": [{"name": "u", "user": {"token": TOKEN}}],
                        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}, f)
    warm = CONCURRENCY
    created = 0

    async def measure(label: str, client: Any, seen: Callable[[], int]) -> None:
        nonlocal created

        async def create(i: int) -> None:
            await client.create("pods", pod_body(f"c-{i}"), NAMESPACE)

        async def settle(total: int) -> None:
            while seen() < total:
                await asyncio.sleep(0.005)

        await _workers(warm, create, created)
        created += warm
        await settle(created)
        phases.begin()
        await _workers(n, create, created)
        created += n
        await settle(created)
        phases.end(label)

    alone = await start_components(kubeconfig, nodes=0, loopback=loopback, only=["serviceaccount"])
    listed = await alone.client.list("pods", NAMESPACE)
    base = len(listed["items"])
    await measure("loopback pod create, no pod watchers", alone.client, lambda: base + created)
    rest = [name for name, _ in COMPONENTS if name != "serviceaccount"]
    everything = await start_components(kubeconfig, nodes=0, loopback=loopback, only=rest)
    pods = everything.factory.informer("pods")
    await pods.wait_synced()
    await measure("loopback pod create, all components", everything.client, lambda: len(pods))
    await stop_components(everything)
    await stop_components(alone)
    await loopback.close()
    gct.cancel()
    await store.close()


def main() -> None:
    mode, n, labels, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sys.path.insert(0, root)  # before the first import of kubeling
    import logging

    logging.disable(logging.WARNING)
    phases = Phases(labels)
    asyncio.run({"ops": ops, "requests": requests, "pieces": pieces, "components": components}[mode](n, phases))


if __name__ == "__main__":
    main()
