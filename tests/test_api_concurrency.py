"""Optimistic concurrency: many writers update one object with resourceVersions; every success is
visible, every loser gets 409 Conflict, no update is lost."""

from __future__ import annotations

import asyncio

from kubeling.client.rest import ApiError, Client

WRITERS = 24
ROUNDS = 6


def test_no_lost_update(cluster):
    async def main() -> tuple[int, int, dict]:
        clients = [Client(cluster.client_config()) for _ in range(WRITERS)]
        try:
            await clients[0].create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": "counter"}, "data": {"n": "0", "log": ""}},
                                    namespace="default")
            wins = losses = 0
            barrier = asyncio.Event()

            async def writer(i: int) -> None:
                nonlocal wins, losses
                c = clients[i]
                for r in range(ROUNDS):
                    cur = await c.get("configmaps", "counter", namespace="default")
                    if r == 0:
                        await barrier.wait()
                    cur["data"]["n"] = str(int(cur["data"]["n"]) + 1)
                    cur["data"]["log"] += f"{i}.{r};"
                    try:
                        await c.update("configmaps", cur, namespace="default")
                        wins += 1
                    except ApiError as e:
                        assert e.code == 409, e.status
                        assert e.reason == "Conflict"
                        assert "the object has been modified; please apply your changes to the latest version " \
                               "and try again" in e.status["message"]
                        losses += 1

            tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
            await asyncio.sleep(0.2)
            barrier.set()
            await asyncio.gather(*tasks)
            final = await clients[0].get("configmaps", "counter", namespace="default")
            return wins, losses, final
        finally:
            for c in clients:
                await c.close()

    wins, losses, final = asyncio.run(main())
    assert wins + losses == WRITERS * ROUNDS
    assert losses > 0  # the first round starts from one shared resourceVersion
    assert int(final["data"]["n"]) == wins
    assert len([x for x in final["data"]["log"].split(";") if x]) == wins
