"""Node Leases for the whole fleet: the kubelet's lease controller, once for thousands of nodes.

As upstream's kubelet, each node's Lease in kube-node-lease is renewed every quarter of its
duration (10 s of 40 s) by an Update (PUT) of the last Lease object held for it, with
holderIdentity, leaseDurationSeconds and a fresh renewTime; a 409 Conflict means someone else
wrote it: read it and update again; a 404 means it was deleted: create it again. A PUT of a held
object is the cheapest write the API server offers (no read-modify-patch on its side), and at
5,000 nodes there are 500 of them a second, so the steady path does little more than that:

* one ticker spreads renewals evenly over the interval (nodes hash into ``BUCKETS`` slots, one
  slot per tick), so the server sees a steady trickle, never a burst;
* a small pool of worker coroutines performs them (no task per renewal); the pool grows only
  while renewals queue up behind a slow API server, up to ``MAX_WORKERS``;
* a node whose renewal is still queued or in flight is not queued again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from kubeling.client.rest import ApiError, Client, is_already_exists, is_conflict, is_not_found, resource_path
from kubeling.nodes import stages

log = logging.getLogger(__name__)

LEASES = "leases.coordination.k8s.io"
LEASE_NAMESPACE = "kube-node-lease"
BUCKETS = 40  # ticks per renewal interval: 12.5 renewals a tick at 5,000 nodes
MAX_WORKERS = 64  # renewals in flight at most (a slow API server queues the rest)
MAX_UPDATE_RETRIES = 5  # upstream's lease controller: update attempts after conflicts

Obj = dict[str, Any]


def _bucket(name: str) -> int:
    return zlib.crc32(name.encode()) % BUCKETS


class NodeLeases:
    """The Leases of every adopted node: first write, renewal on the clock, and what is held.

    ``node_for(name)`` answers the Node whose kubelet should heartbeat now, or None (gone, not
    adopted, or simulated unreachable).
    """

    def __init__(self, client: Client, *, duration: int, clock: Callable[[], float],
                 node_for: Callable[[str], Obj | None]) -> None:
        self.client = client
        self.duration = duration
        self.clock = clock
        self.node_for = node_for
        self._held: dict[str, Obj] = {}      # node name -> its Lease as last written or read
        self._listed: dict[str, Obj] = {}    # Leases found at start, not yet held (a restarted fleet)
        self._paths: dict[str, str] = {}     # node name -> the Lease's URL path
        self._buckets: list[set[str]] = [set() for _ in range(BUCKETS)]
        self._due: deque[str] = deque()      # renewals waiting for a worker
        self._pending: set[str] = set()      # queued or in flight
        self._wake = asyncio.Event()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle = 0
        self._ns_ready = False

    # -- membership ---------------------------------------------------------------------------

    def track(self, name: str) -> None:
        """An adopted node: renew its Lease on the clock once it has one."""
        self._buckets[_bucket(name)].add(name)

    def untrack(self, name: str) -> None:
        self._buckets[_bucket(name)].discard(name)

    def forget(self, name: str) -> None:
        """The node is gone: drop it and whatever was held for it."""
        self.untrack(name)
        self._held.pop(name, None)
        self._listed.pop(name, None)
        self._paths.pop(name, None)

    def held(self, name: str) -> bool:
        """Whether this fleet has written (or read) the node's Lease since it started."""
        return name in self._held

    # -- writes -------------------------------------------------------------------------------

    async def heartbeat(self, node: Obj, now: float) -> None:
        """Renew the node's Lease (creating it when there is none), as the kubelet's lease controller.

        Whatever fails, the node stays held: the next round tries again from what is held.
        """
        name = node["metadata"]["name"]
        base = self._held.get(name)
        for _ in range(MAX_UPDATE_RETRIES):
            if base is None:
                base, created = await self._ensure(node, now)
                if created:
                    self._held[name] = base
                    return
            try:
                self._held[name] = await self.client.request(
                    "PUT", self._path(name), body=orjson.dumps(self._renewed(base, node, now)))
                return
            except ApiError as e:
                if is_not_found(e):
                    base = None  # deleted behind our back: create it again
                elif is_conflict(e):
                    base = await self._read(name)  # written by someone else: update what is there
                else:
                    raise
        raise ApiError(409, "Conflict", f"lease {name}: still conflicting after {MAX_UPDATE_RETRIES} updates")

    def _renewed(self, base: Obj, node: Obj, now: float) -> Obj:
        """``base`` with this kubelet's spec and a fresh renewTime (shallow copies: ``base`` stays as it was)."""
        meta = node["metadata"]
        lease = {**base, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",  # list items lack them
                 "spec": {**(base.get("spec") or {}), "holderIdentity": meta["name"],
                          "leaseDurationSeconds": self.duration, "renewTime": stages.fmt_micro_time(now)}}
        lease_meta = base.get("metadata") or {}
        if not _owned_by(lease_meta, meta.get("uid", "")):
            # a node re-created under the same name: its Lease belongs to the new one
            lease["metadata"] = {**lease_meta, "ownerReferences": [_owner(node)]}
        return lease

    async def load(self) -> None:
        """List the Leases that already exist (one request), so a restarted fleet updates them
        rather than asking for each (a GET) or colliding with it (a create's 409)."""
        try:
            found = await self.client.list_all(LEASES, LEASE_NAMESPACE, page_size=1000)
        except ApiError as e:  # not fatal: creates that collide read the Lease instead
            log.info("listing node leases: %s", e)
            return
        self._listed = {item["metadata"]["name"]: item for item in found.get("items") or []}

    async def _ensure(self, node: Obj, now: float) -> tuple[Obj, bool]:
        """The node's Lease and whether it was just created: what was listed at start, else a create."""
        name = node["metadata"]["name"]
        listed = self._listed.pop(name, None)
        if listed is not None:
            return listed, False
        try:
            return await self._create(node, now), True
        except ApiError as e:
            if not is_already_exists(e):
                raise
        lease = await self._read(name)
        if lease is None:
            raise ApiError(409, "Conflict", f"lease {name}: exists and vanishes")
        return lease, False

    async def _read(self, name: str) -> Obj | None:
        try:
            return await self.client.get(LEASES, name, LEASE_NAMESPACE)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise

    async def _create(self, node: Obj, now: float) -> Obj:
        body = stages.lease_body(node, now=now, duration=self.duration)
        try:
            return await self.client.create(LEASES, body, LEASE_NAMESPACE)
        except ApiError as e:
            if not is_not_found(e) or self._ns_ready:
                raise
        with contextlib.suppress(ApiError):  # normally the API server's bootstrap makes it
            await self.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": LEASE_NAMESPACE}})
        self._ns_ready = True
        return await self.client.create(LEASES, body, LEASE_NAMESPACE)

    def _path(self, name: str) -> str:
        path = self._paths.get(name)
        if path is None:
            path = self._paths[name] = resource_path(LEASES, LEASE_NAMESPACE, name)
        return path

    # -- the clock ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew every held Lease each quarter of its duration, one bucket of nodes per tick.

        Ticks follow the clock, not the end of the previous tick's writes: a slow API server makes
        single renewals late, never the whole schedule. Nodes without a Lease yet are left to the
        fleet's node sync, which writes the first one.
        """
        interval = self.duration / 4  # upstream renews at a quarter of the lease duration
        tick_len = interval / BUCKETS
        loop = asyncio.get_running_loop()
        tick = 0
        next_tick = loop.time()
        try:
            while True:
                next_tick += tick_len
                delay = next_tick - loop.time()
                if delay < -interval:  # the loop was stalled for a whole round: start afresh
                    next_tick = loop.time()
                await asyncio.sleep(max(delay, 0.0))
                self._enqueue(self._buckets[tick % BUCKETS])
                tick += 1
        finally:
            for t in list(self._workers):
                t.cancel()

    def _enqueue(self, names: set[str]) -> None:
        held, pending, due = self._held, self._pending, self._due
        for name in names:
            if name in held and name not in pending:
                pending.add(name)
                due.append(name)
        if not due:
            return
        self._wake.set()
        for _ in range(min(len(due) - self._idle, MAX_WORKERS - len(self._workers))):
            t = asyncio.create_task(self._worker(), name="node-lease-renewal")
            self._workers.add(t)
            t.add_done_callback(self._workers.discard)

    async def _worker(self) -> None:
        due = self._due
        while True:
            while not due:
                self._idle += 1
                self._wake.clear()
                try:
                    await self._wake.wait()
                finally:
                    self._idle -= 1
            name = due.popleft()
            try:
                node = self.node_for(name)
                if node is not None:
                    await self.heartbeat(node, self.clock())
            except ApiError as e:
                log.debug("lease %s: %s", name, e)
            except Exception as e:  # connection trouble: the next round retries
                log.info("lease %s: %r", name, e)
            finally:
                self._pending.discard(name)


def _owned_by(lease_meta: Obj, uid: str) -> bool:
    for ref in lease_meta.get("ownerReferences") or ():
        if ref.get("kind") == "Node" and ref.get("uid") == uid:
            return True
    return False


def _owner(node: Obj) -> Obj:
    meta = node["metadata"]
    return {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta.get("uid", "")}
