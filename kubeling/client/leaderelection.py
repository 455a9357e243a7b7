"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package.

Several replicas of a component run ``LeaderElector.run()``; the one holding the Lease runs its
controllers. The holder renews ``spec.renewTime`` every ``retry_period``; if it cannot renew for
``renew_deadline`` it steps down. Others take the Lease over only after they have seen the same
record unchanged for ``lease_duration`` on their own clock (clocks are never compared across
machines). Optimistic concurrency on the Lease's resourceVersion makes a takeover race safe.
Defaults are upstream's: 15 s lease, 10 s renew deadline, 2 s retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubeling.client.rest import ApiError, Client

log = logging.getLogger(__name__)

LEASES = "leases.coordination.k8s.io"
JITTER = 1.2  # upstream JitterFactor for the acquire loop

Callback = Callable[[], Awaitable[None] | None]


def now_micro() -> str:
    """metav1.MicroTime in RFC 3339 with microseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _raise_if_stopping() -> None:
    """A library may turn the cancellation of an in-flight request into another error (aiohttp can):
    the task is still being stopped, so stop rather than carry on with the Lease."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


def _stray_cancel() -> bool:
    """A CancelledError nobody asked this task for: a future the HTTP client awaited was cancelled
    under it. That is a failed request, not a request to stop (nor to give the Lease up)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


class LeaderElector:
    """Acquire, hold and renew a Lease; see the module docstring.

    ``on_started_leading`` may be a coroutine function: it runs as a task and is cancelled when
    leadership is lost. ``on_stopped_leading`` runs after that (sync or async). ``run()`` returns
    after leadership is lost (upstream's components then exit); cancel it to stop campaigning.
    """

    def __init__(self, client: Client, lease_name: str, namespace: str, identity: str,
                 on_started_leading: Callback, on_stopped_leading: Callback | None = None, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 release_on_cancel: bool = True,
                 on_new_leader: Callable[[str], None] | None = None) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        self.client = client
        self.lease_name = lease_name
        self.namespace = namespace
        self.identity = identity
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._observed_spec: dict[str, Any] | None = None
        self._observed_time = 0.0
        self._observed_rv: str | None = None
        self._reported_leader: str | None = None
        self._leading = False

    def is_leader(self) -> bool:
        return self._leading

    def get_leader(self) -> str | None:
        return (self._observed_spec or {}).get("holderIdentity") or None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not await self._try_acquire_or_renew():
            _raise_if_stopping()
            await asyncio.sleep(self.retry_period * random.uniform(1.0, JITTER))
        self._leading = True
        log.info("%s: successfully acquired lease %s/%s", self.identity, self.namespace, self.lease_name)
        work: asyncio.Task[Any] | None = None
        result = self.on_started_leading()
        if inspect.isawaitable(result):
            work = asyncio.ensure_future(result)
        try:
            while True:
                deadline = loop.time() + self.renew_deadline
                renewed = False
                while loop.time() < deadline:
                    try:
                        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                        async with asyncio.timeout(max(0.1, deadline - loop.time())):
                            renewed = await self._try_acquire_or_renew()
                    except TimeoutError:
                        renewed = False
                    _raise_if_stopping()
                    if renewed:
                        break
                    await asyncio.sleep(min(self.retry_period, max(0.0, deadline - loop.time())))
                if not renewed:
                    log.info("%s: failed to renew lease %s/%s: timed out", self.identity, self.namespace,
                             self.lease_name)
                    return
                await asyncio.sleep(self.retry_period)
        except asyncio.CancelledError:
            # only a real stop (someone cancelled this task) gives the Lease up; see _stray_cancel
            if self.release_on_cancel and not _stray_cancel():
                await asyncio.shield(self._release())
            raise
        finally:
            self._leading = False
            if work is not None and not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
            if self.on_stopped_leading is not None:
                stopped = self.on_stopped_leading()
                if inspect.isawaitable(stopped):
                    await stopped

    async def _try_acquire_or_renew(self) -> bool:
        now = now_micro()
        mono = asyncio.get_running_loop().time()
        desired = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                   "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        try:
            lease = await self.client.get(LEASES, self.lease_name, self.namespace)
        except ApiError as e:
            if e.code != 404:
                log.warning("error retrieving lease %s/%s: %s", self.namespace, self.lease_name, e)
                return False
            try:
                created = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.lease_name, "namespace": self.namespace},
                    "spec": desired}, self.namespace)
            except Exception as e2:  # noqa: BLE001 - an ApiError or connection trouble: not this round
                log.info("error initially creating lease %s/%s: %s", self.namespace, self.lease_name, e2)
                return False
            self._observe(created, mono)
            return True
        except asyncio.CancelledError:
            if not _stray_cancel():
                raise
            log.info("error retrieving lease %s/%s: request cancelled", self.namespace, self.lease_name)
            return False
        except Exception as e:  # noqa: BLE001 - connection trouble: just not this round
            log.info("error retrieving lease %s/%s: %r", self.namespace, self.lease_name, e)
            return False

        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observe(lease, mono)
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self._observed_time + duration > mono:
            log.debug("lock is held by %s and has not yet expired", holder)
            return False
        if holder == self.identity:
            desired["acquireTime"] = spec.get("acquireTime") or now
            desired["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            desired["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**spec, **desired}
        try:
            updated = await self.client.update(LEASES, lease, self.namespace)
        except asyncio.CancelledError:
            if not _stray_cancel():
                raise
            log.info("failed to update lease %s/%s: request cancelled", self.namespace, self.lease_name)
            return False
        except ApiError as e:
            log.info("failed to update lease %s/%s: %s", self.namespace, self.lease_name, e)
            return False
        except Exception as e:  # noqa: BLE001
            log.info("failed to update lease %s/%s: %r", self.namespace, self.lease_name, e)
            return False
        self._observe(updated, mono)
        return True

    def _observe(self, lease: dict[str, Any], mono: float) -> None:
        self._observed_spec = lease.get("spec") or {}
        self._observed_time = mono
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")
        leader = self._observed_spec.get("holderIdentity") or ""
        if leader != self._reported_leader:
            self._reported_leader = leader
            if self.on_new_leader is not None and leader:
                try:
                    self.on_new_leader(leader)
                except Exception:
                    log.exception("on_new_leader failed")

    async def _release(self) -> None:
        """Give the Lease up on shutdown so another replica need not wait for it to expire.

        client-go releases from the Lease as it last saw it; this reads it again first: a renewal cut
        short by the stop may have been written after this elector last saw the Lease, and releasing
        from that older view would only conflict (and leave the Lease held until it expires)."""
        if self._observed_spec is None or self._observed_spec.get("holderIdentity") != self.identity:
            return
        try:
            async with asyncio.timeout(5):
                current = await self.client.get(LEASES, self.lease_name, self.namespace)
                spec = current.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return  # someone else holds it already
                now = now_micro()
                lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": self.lease_name, "namespace": self.namespace,
                                      "resourceVersion": current["metadata"]["resourceVersion"]},
                         "spec": {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                                  "leaseTransitions": spec.get("leaseTransitions") or 0}}
                await self.client.update(LEASES, lease, self.namespace)
        except Exception as e:  # noqa: BLE001
            log.info("failed to release lease %s/%s: %r", self.namespace, self.lease_name, e)
