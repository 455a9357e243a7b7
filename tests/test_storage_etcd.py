"""etcd-only store behaviour: several stores on one etcd, member failure, durability, TLS, URLs.

The backend-neutral contract (CRUD, paging, watch, Compacted, restart) is in
test_storage_contract.py, which runs on etcd too.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_util import EtcdCluster, require_etcd

from kubeling.storage import Compacted, Conflict, Event, open_store
from kubeling.storage.etcd import EtcdStore, TLSConfig, raw_etcd_put_rate


def pod(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, **extra}


def key(name: str) -> str:
    return f"/registry/pods/default/{name}"


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def take(it: AsyncIterator[Event], n: int, timeout: float = 30) -> list[Event]:
    return [await asyncio.wait_for(it.__anext__(), timeout) for _ in range(n)]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    cluster = EtcdCluster.start(tmp_path / "etcd")
    yield cluster
    cluster.stop()


def test_open_store_etcd_urls(tmp_path: Path) -> None:
    s = open_store("etcd://127.0.0.1:2379,10.0.0.2:2379", tmp_path)
    assert isinstance(s, EtcdStore)
    assert s.endpoints == ["127.0.0.1:2379", "10.0.0.2:2379"] and s.tls is None
    s = open_store("etcd://e1:2379?cacert=ca.crt&cert=/abs/c.crt&key=c.key", tmp_path)
    assert isinstance(s, EtcdStore) and s.endpoints == ["e1:2379"]
    assert s.tls == TLSConfig(cacert=tmp_path / "ca.crt", cert=Path("/abs/c.crt"), key=tmp_path / "c.key")
    assert open_store("etcds://e1:2379", tmp_path).tls == TLSConfig()  # type: ignore[attr-defined]
    for bad in ("etcd://", "etcd://e1", "etcd://e1:2379?bogus=1", "etcd://e1:2379/path"):
        with pytest.raises(ValueError):
            open_store(bad, tmp_path)


def test_two_stores_on_one_etcd_see_each_others_writes(etcd: EtcdCluster) -> None:
    async def main() -> None:
        a = EtcdStore(etcd.endpoints, compact_interval=0)
        b = EtcdStore(etcd.endpoints, compact_interval=0)
        await a.start()
        await b.start()
        try:
            r = a.current_revision()
            watch_b = b.watch("/registry/pods/", revision=r).__aiter__()
            created = await a.create(key("x"), pod("x", spec={"v": 1}))
            # Right after the write through a, b's get and latest list have it.
            assert await b.get(key("x")) == created
            assert [rv(o) for o in (await b.list("/registry/pods/")).items] == [r + 1]
            assert b.current_revision() == r + 1
            (ev,) = await take(watch_b, 1)
            assert (ev.type, ev.revision, ev.object) == ("ADDED", r + 1, created)

            # Compare-and-swap holds across the two: b's stale write loses.
            created["spec"]["v"] = 2
            via_b = await b.update(key("x"), created, expected_revision=r + 1)
            with pytest.raises(Conflict) as ei:
                await a.update(key("x"), pod("x", spec={"v": 3}), expected_revision=r + 1)
            assert ei.value.current == via_b
            (ev,) = await take(watch_b, 1)
            assert ev.type == "MODIFIED" and ev.prev_object["spec"]["v"] == 1

            watch_a = a.watch("/registry/pods/", revision=r + 2).__aiter__()
            gone = await b.delete(key("x"))
            assert await a.get(key("x")) is None and (await a.list("/registry/")).items == []
            (ev,) = await take(watch_a, 1)
            assert (ev.type, ev.revision, ev.object) == ("DELETED", r + 3, gone)
            assert a.current_revision() == b.current_revision() == r + 3

            # Coordinated compaction: one of the two compacts per round.
            for i in range(10):
                await a.create(key(f"p{i}"), pod(f"p{i}"))
            await asyncio.sleep(0.1)
            done = await asyncio.gather(a.compact(keep=2, coordinate=True), b.compact(keep=2, coordinate=True))
            assert sorted(done) == [0, r + 11]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_writes_outside_registry_keep_the_revision_right(etcd: EtcdCluster) -> None:
    async def main() -> None:
        async with EtcdStore(etcd.endpoints, compact_interval=0) as s:
            r = s.current_revision()
            rate = await raw_etcd_put_rate(etcd.endpoints, seconds=0.2, concurrency=4)
            assert rate > 0
            # raw puts + one delete-range moved etcd's revision; the store follows it.
            created = await s.create(key("a"), pod("a"))
            assert rv(created) > r + 1 and s.current_revision() == rv(created)
            listed = await s.list("/registry/")
            assert listed.revision == rv(created) and len(listed.items) == 1

    asyncio.run(main())


def test_acknowledged_writes_survive_an_etcd_kill_9(etcd: EtcdCluster) -> None:
    acked: dict[str, int] = {}

    async def write() -> None:
        async with EtcdStore(etcd.endpoints, compact_interval=0) as s:
            async def worker(t: int) -> None:
                for i in range(20):
                    o = await s.create(key(f"w{t}-{i}"), pod(f"w{t}-{i}"))
                    acked[key(f"w{t}-{i}")] = rv(o)

            await asyncio.gather(*(worker(t) for t in range(8)))

    asyncio.run(write())
    etcd.kill(0)
    etcd.restart(0)
    etcd.wait_healthy()

    async def check() -> None:
        async with EtcdStore(etcd.endpoints, compact_interval=0) as s:
            got = {o["metadata"]["name"]: rv(o) for o in (await s.list("/registry/pods/")).items}
            assert got == {k.rsplit("/", 1)[1]: r for k, r in acked.items()}
            assert s.current_revision() == max(acked.values())

    asyncio.run(check())


def test_three_members_one_killed_the_store_keeps_working(tmp_path: Path) -> None:
    cluster = EtcdCluster.start(tmp_path / "etcd3", members=3)

    async def main() -> None:
        async with EtcdStore(cluster.endpoints, compact_interval=0, retry_budget=60) as s:
            r = s.current_revision()
            seen: list[Event] = []

            async def consume() -> None:
                async for ev in s.watch("/registry/pods/", revision=r):
                    seen.append(ev)

            consumer = asyncio.create_task(consume())
            stop = asyncio.Event()
            written: list[int] = []

            async def writer(t: int) -> None:
                i = 0
                while not stop.is_set():
                    written.append(rv(await s.create(key(f"w{t}-{i}"), pod(f"w{t}-{i}"))))
                    i += 1
                    await asyncio.sleep(0.005)

            writers = [asyncio.create_task(writer(t)) for t in range(4)]
            while len(written) < 40:
                await asyncio.sleep(0.01)
            used = s._conn.current
            cluster.kill(used)  # the member this store talks to (and watches through)
            mark = len(written)
            while len(written) < mark + 80:
                await asyncio.sleep(0.02)
            assert s._conn.current != used
            stop.set()
            await asyncio.gather(*writers)

            # Every acknowledged write is there, exactly once, and the watch saw each in order.
            listed = await s.list("/registry/pods/")
            assert sorted(rv(o) for o in listed.items) == sorted(written)
            assert len(set(written)) == len(written)
            for _ in range(600):
                if len(seen) >= len(written):
                    break
                await asyncio.sleep(0.05)
            assert [e.revision for e in seen] == sorted(written)
            assert s.current_revision() == max(written)
            consumer.cancel()

    try:
        asyncio.run(main())
    finally:
        cluster.stop()


def _pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA and one cert for 127.0.0.1, good for both ends (server and client auth)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-etcd-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    d.mkdir(parents=True, exist_ok=True)
    paths = d / "ca.crt", d / "etcd.crt", d / "etcd.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_client_tls(tmp_path: Path) -> None:
    require_etcd()
    ca, cert, key_file = _pki(tmp_path / "pki")
    cluster = EtcdCluster.start(tmp_path / "etcd", tls=(ca, cert, key_file))

    async def main() -> None:
        url = f"etcd://{cluster.endpoints[0]}?cacert=pki/ca.crt&cert=pki/etcd.crt&key=pki/etcd.key"
        s = open_store(url, tmp_path)
        await s.start()
        try:
            created = await s.create(key("a"), pod("a"))
            assert await s.get(key("a")) == created
        finally:
            await s.close()
        # Without a client certificate the server refuses.
        plain = EtcdStore(cluster.endpoints, tls=TLSConfig(cacert=ca), compact_interval=0, retry_budget=1, timeout=2)
        with pytest.raises(Exception):  # noqa: B017 - grpc's error for a rejected handshake
            await plain.start()
        await plain.close()

    try:
        asyncio.run(main())
    finally:
        cluster.stop()


def test_a_feed_left_behind_by_compaction_rebuilds_the_cache(etcd: EtcdCluster) -> None:
    async def main() -> None:
        a = EtcdStore(etcd.endpoints, compact_interval=0)
        b = EtcdStore(etcd.endpoints, compact_interval=0)
        await a.start()
        await b.start()
        try:
            r = a.current_revision()
            watcher = a.watch("/registry/pods/", revision=r).__aiter__()
            assert a._feed is not None
            a._feed.cancel()  # a stops hearing from etcd while b writes and compacts
            await asyncio.gather(a._feed, return_exceptions=True)
            for i in range(5):
                await b.create(key(f"p{i}"), pod(f"p{i}"))
            assert await b.compact(keep=0) == r + 5
            a._feed = asyncio.create_task(a._feed_forever())
            # a's watcher ends (its history is gone); re-watching from there is Compacted; a lists the truth.
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(watcher.__anext__(), 30)
            for _ in range(600):
                if a.current_revision() == r + 5:
                    break
                await asyncio.sleep(0.05)
            assert len((await a.list("/registry/pods/")).items) == 5
            with pytest.raises(Compacted):
                await a.watch("/registry/pods/", revision=r).__anext__()  # type: ignore[attr-defined]
            fresh = a.watch("/registry/pods/", revision=0).__aiter__()
            created = await b.create(key("late"), pod("late"))
            assert (await take(fresh, 1))[0].object == created
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
