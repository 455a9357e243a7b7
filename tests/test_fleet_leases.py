"""Node Leases as the kubelet's lease controller writes them, and the node status report schedule.

The Lease tests run :class:`kubeling.nodes.lease.NodeLeases` against a real API server in the test's
own event loop (through the loopback), recording the requests it makes: a steady renewal is one
Update of the Lease held; conflicts, deletions and a restart are handled as upstream's controller does.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from kubeling.cli import runtime
from kubeling.client.rest import Client
from kubeling.nodes import stages
from kubeling.nodes.lease import LEASE_NAMESPACE, LEASES, NodeLeases
from kubeling.nodes.stages import Ctx, plan

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class RecordingClient(Client):
    """A Client that remembers each request's verb and path."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        self.calls.append((method, path.rsplit("/", 2)[-2] if method != "POST" else path.rsplit("/", 1)[-1]))
        return await super().request(method, path, **kw)

    def take(self) -> list[str]:
        verbs = [m for m, _ in self.calls]
        self.calls.clear()
        return verbs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_with_api(tmp_path: Path, body: Any) -> None:
    """Run ``body(client)`` against an in-process API server (no controllers: nobody else writes)."""

    async def main() -> None:
        data = tmp_path / "data"
        api = await runtime.start_apiserver(data_dir=data, port=_free_port(), store_url="sqlite://")
        client = RecordingClient(runtime.client_config(data / "kubeconfig"), loopback=api.loopback())
        try:
            await body(client)
        finally:
            await client.close()
            await api.stop()

    asyncio.run(asyncio.wait_for(main(), 120))


async def make_node(client: Client, name: str) -> dict:
    return await client.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})


def leases_for(client: Client, nodes: dict[str, dict]) -> NodeLeases:
    return NodeLeases(client, duration=40, clock=time.time, node_for=nodes.get)


def test_first_heartbeat_creates_then_renewals_are_updates(tmp_path: Path) -> None:
    async def body(client: RecordingClient) -> None:
        node = await make_node(client, "n1")
        leases = leases_for(client, {"n1": node})
        await leases.load()
        client.take()
        await leases.heartbeat(node, time.time())
        assert client.take() == ["POST"]  # a new node: its Lease is new too
        first = await client.get(LEASES, "n1", LEASE_NAMESPACE)
        assert first["spec"]["holderIdentity"] == "n1" and first["spec"]["leaseDurationSeconds"] == 40
        assert first["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                                          "uid": node["metadata"]["uid"]}]
        client.take()
        for _ in range(3):
            await leases.heartbeat(node, time.time())
            assert client.take() == ["PUT"]  # steady state: one Update of the Lease held
        now = await client.get(LEASES, "n1", LEASE_NAMESPACE)
        assert now["spec"]["renewTime"] > first["spec"]["renewTime"]
        assert int(now["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
        assert now["spec"]["holderIdentity"] == "n1" and now["spec"]["leaseDurationSeconds"] == 40

    run_with_api(tmp_path, body)


def test_conflict_rereads_and_deleted_lease_is_recreated(tmp_path: Path) -> None:
    async def body(client: RecordingClient) -> None:
        node = await make_node(client, "n1")
        leases = leases_for(client, {"n1": node})
        await leases.heartbeat(node, time.time())
        # someone else writes the Lease: a label, and a holder that is not the kubelet
        await client.patch(LEASES, "n1", {"metadata": {"labels": {"team": "x"}}, "spec": {"holderIdentity": "other"}},
                           LEASE_NAMESPACE)
        client.take()
        await leases.heartbeat(node, time.time())
        assert client.take() == ["PUT", "GET", "PUT"]  # 409, read what is there, update it
        lease = await client.get(LEASES, "n1", LEASE_NAMESPACE)
        assert lease["metadata"]["labels"] == {"team": "x"} and lease["spec"]["holderIdentity"] == "n1"
        await client.delete(LEASES, "n1", LEASE_NAMESPACE)
        client.take()
        await leases.heartbeat(node, time.time())
        assert client.take() == ["PUT", "POST"]  # 404: created again
        assert (await client.get(LEASES, "n1", LEASE_NAMESPACE))["spec"]["holderIdentity"] == "n1"

    run_with_api(tmp_path, body)


def test_restarted_fleet_updates_the_listed_lease_and_a_new_node_uid_owns_it(tmp_path: Path) -> None:
    async def body(client: RecordingClient) -> None:
        node = await make_node(client, "n1")
        await leases_for(client, {"n1": node}).heartbeat(node, time.time())
        # a restarted fleet lists the Leases once, then updates them without reading each
        leases = leases_for(client, {"n1": node})
        await leases.load()
        client.take()
        await leases.heartbeat(node, time.time())
        assert client.take() == ["PUT"]
        # the node is re-created under the same name: the Lease follows the new Node
        await client.delete("nodes", "n1")
        node = await make_node(client, "n1")
        await leases.heartbeat(node, time.time())
        lease = await client.get(LEASES, "n1", LEASE_NAMESPACE)
        assert [r["uid"] for r in lease["metadata"]["ownerReferences"]] == [node["metadata"]["uid"]]

    run_with_api(tmp_path, body)


def test_renewals_on_the_clock_spread_over_the_interval(tmp_path: Path) -> None:
    async def body(client: RecordingClient) -> None:
        nodes = {f"n{i}": await make_node(client, f"n{i}") for i in range(20)}
        leases = NodeLeases(client, duration=2, clock=time.time, node_for=nodes.get)  # renew every 0.5 s
        for name, node in nodes.items():
            leases.track(name)
            await leases.heartbeat(node, time.time())
        before = {n: (await client.get(LEASES, n, LEASE_NAMESPACE))["spec"]["renewTime"] for n in nodes}
        client.take()
        ticker = asyncio.create_task(leases.run())
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                after = {n: (await client.get(LEASES, n, LEASE_NAMESPACE))["spec"]["renewTime"] for n in nodes}
                if all(after[n] > before[n] for n in nodes):
                    break
                assert asyncio.get_running_loop().time() < deadline, "not every Lease was renewed"
                await asyncio.sleep(0.2)
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        verbs = {m for m, _ in client.calls}
        assert verbs <= {"PUT", "GET"} and "PUT" in verbs  # renewals are Updates (GETs are this test's)

    run_with_api(tmp_path, body)


def test_micro_time_matches_datetime_formatting() -> None:
    for t in (T0, T0 + 0.25, T0 + 0.9999996, T0 + 59.000001, 1.5, 1_899_052_557.1368866):
        want = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert stages.fmt_micro_time(t) == want


def _registered(name: str) -> dict:
    n: dict = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": "u", "annotations": {}},
               "spec": {"podCIDR": "10.244.1.0/24"}, "status": {}}
    n["status"] = plan(stages.NODE_STAGES, n, Ctx(now=T0, node=n)).effect.status
    return n


def test_first_report_after_a_change_is_shifted_per_node_then_every_period() -> None:
    delays = {stages.report_delay(f"node-{i}", 300.0) for i in range(1, 200)}
    assert all(-150.0 <= d < 150.0 for d in delays) and len(delays) > 150
    assert min(delays) < -100 and max(delays) > 100  # spread over the whole period
    n = _registered("node-7")
    delay = stages.report_delay("node-7", 300.0)
    # right after registration (a change): due one period plus this node's delay later
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 1, node=n, report_jitter=True))
    assert pl.stage == "node-heartbeat" and pl.effect is None
    assert pl.wait == pytest.approx(299 + delay)
    pl = plan(stages.NODE_STAGES, n, Ctx(now=T0 + 300 + delay, node=n, report_jitter=True))
    assert set(pl.effect.status) == {"conditions"}
    n["status"]["conditions"] = pl.effect.status["conditions"]
    # after an unchanged report: exactly one period, no delay
    beat = stages.parse_time(n["status"]["conditions"][-1]["lastHeartbeatTime"])
    pl = plan(stages.NODE_STAGES, n, Ctx(now=beat + 10, node=n, report_jitter=True))
    assert pl.effect is None and pl.wait == pytest.approx(290)
    # without the jitter (a fixed clock's default), registration reports after exactly one period
    n = _registered("node-7")
    assert plan(stages.NODE_STAGES, n, Ctx(now=T0 + 1, node=n)).wait == pytest.approx(299)
