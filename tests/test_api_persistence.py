"""kill -9 while 1,000 ConfigMap writes are in flight: every acknowledged write survives the restart
with its resourceVersion, and no object is torn."""

from __future__ import annotations

import asyncio
import threading
import time

from kubeling.client.rest import ApiError, Client

N = 1000


def test_kill9_keeps_every_acknowledged_write(cluster):
    acked: dict[str, tuple[str, str]] = {}  # name -> (resourceVersion, payload)
    config = cluster.client_config()
    stop = threading.Event()

    async def writer(worker: int, names: list[str]) -> None:
        client = Client(config)
        try:
            for name in names:
                payload = f"{name}-" + "x" * (200 + worker)
                try:
                    obj = await client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                             "metadata": {"name": name},
                                                             "data": {"payload": payload}}, namespace="default")
                except (ApiError, OSError, Exception):  # noqa: BLE001 - the server may die mid-request
                    if stop.is_set():
                        return
                    continue
                acked[name] = (obj["metadata"]["resourceVersion"], payload)
        finally:
            await client.close()

    async def run_writers() -> None:
        names = [f"cm-{i:04d}" for i in range(N)]
        await asyncio.gather(*(writer(w, names[w::16]) for w in range(16)), return_exceptions=True)

    t = threading.Thread(target=lambda: asyncio.run(run_writers()))
    t.start()
    deadline = time.monotonic() + 120
    while len(acked) < N // 2 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.01)
    stop.set()
    cluster.kill9()
    t.join(120)
    assert acked, "no write was acknowledged before the kill"
    cluster.start()

    async def read_back() -> dict[str, dict]:
        client = Client(config)
        try:
            out: dict[str, dict] = {}
            cont = None
            while True:
                page = await client.list("configmaps", namespace="default", limit=500, continue_=cont)
                for item in page["items"]:
                    out[item["metadata"]["name"]] = item
                cont = page["metadata"].get("continue")
                if not cont:
                    return out
        finally:
            await client.close()

    stored = asyncio.run(read_back())
    for name, (rv, payload) in acked.items():
        assert name in stored, f"acknowledged {name} lost"
        assert stored[name]["metadata"]["resourceVersion"] == rv
        assert stored[name]["data"] == {"payload": payload}
    for name, obj in stored.items():
        if name.startswith("cm-"):  # unacknowledged writes may exist, but whole
            assert obj["data"]["payload"].startswith(name + "-") and obj["metadata"]["uid"]
