"""The in-process loopback transport: what it must share with HTTPS beyond the client tests'
verbs (see test_client_integration.py, which runs over both): authentication, the metrics
middleware, a too-old watch, and a caller giving up halfway through a write."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import aiohttp
import pytest

from kubeling.cli import runtime
from kubeling.client.config import ClientConfig
from kubeling.client.rest import ApiError, Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _server(data: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> runtime.RunningApi:
    if monkeypatch is not None:  # a small watch window: a few writes push revision 1 out of it
        monkeypatch.setenv("KUBELING_WATCH_WINDOW", "5")
    return await runtime.start_apiserver(data_dir=data, port=free_port(), store_url="sqlite://")


def test_bad_token_is_refused_as_over_https(tmp_path: Path) -> None:
    async def main() -> None:
        api = await _server(tmp_path)
        try:
            config = ClientConfig.from_kubeconfig(tmp_path / "kubeconfig")
            config.token = "not-a-token"
            async with Client(config, loopback=api.loopback()) as c:
                with pytest.raises(ApiError) as ei:
                    await c.get("namespaces", "default")
                assert ei.value.code == 401 and ei.value.reason == "Unauthorized"
                with pytest.raises(ApiError) as ei:
                    async for _ in c.watch("configmaps", "default"):
                        pass
                assert ei.value.code == 401
        finally:
            await api.stop()

    run(main())


def test_requests_are_counted_and_old_watches_expire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        api = await _server(tmp_path, monkeypatch)
        try:
            async with Client(runtime.client_config(tmp_path / "kubeconfig"), loopback=api.loopback()) as c:
                # non-resource endpoints are routed as over HTTPS
                assert (await c.request("GET", "/version"))["gitVersion"].startswith("v1.32.")
                assert await c.request("GET", "/readyz") == "ok"
                assert (await c.request("GET", "/apis"))["kind"] == "APIGroupList"
                for i in range(10):
                    await c.create("configmaps", {"metadata": {"name": f"m{i}"}, "data": {}}, "default")
                # the metrics middleware saw them, as it sees HTTPS requests
                ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))
                config = runtime.client_config(tmp_path / "kubeconfig")
                async with aiohttp.ClientSession() as s, s.get(
                        f"{config.servers[0]}/metrics", ssl=ctx,
                        headers={"Authorization": f"Bearer {config.token}"}) as r:
                    text = await r.text()
                line = next(ln for ln in text.splitlines() if ln.startswith("apiserver_request_total{")
                            and 'resource="configmaps"' in ln and 'verb="POST"' in ln and 'code="201"' in ln)
                assert float(line.rsplit(" ", 1)[1]) >= 10
                # a resourceVersion before the store's window: one ERROR event with 410 Expired
                with pytest.raises(ApiError) as ei:
                    async for _ in c.watch("configmaps", "default", resource_version="1"):
                        pass
                assert ei.value.code == 410
        finally:
            await api.stop()

    run(main())


def test_a_caller_that_gives_up_does_not_cut_the_write(tmp_path: Path) -> None:
    async def main() -> None:
        api = await _server(tmp_path)
        try:
            async with Client(runtime.client_config(tmp_path / "kubeconfig"), loopback=api.loopback()) as c:
                task = asyncio.ensure_future(c.create("configmaps", {"metadata": {"name": "late"}}, "default"))
                await asyncio.sleep(0)  # the request is on its way
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                # as over HTTP, the server finishes what it was asked to do
                for _ in range(200):
                    try:
                        got = await c.get("configmaps", "late", "default")
                        break
                    except ApiError as e:
                        assert e.code == 404
                        await asyncio.sleep(0.05)
                else:
                    pytest.fail("the cancelled create never completed")
                assert got["metadata"]["name"] == "late"
        finally:
            await api.stop()

    run(main())
