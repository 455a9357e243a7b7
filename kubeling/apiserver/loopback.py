"""The in-process loopback: components running in the API server's own process call it without a socket.

kube-apiserver gives its own post-start hooks a loopback client; `kubeling up` does the same for every
component it composes (controllers, scheduler, node fleet). A loopback request goes through exactly
what an HTTPS request goes through after the wire: the server's request wrapper (errors and metrics,
authentication with the component's bearer token, warnings), the same routes and handlers, JSON
bodies in and out (so a component never shares a mutable object with the server), except for watch
events: an informer gets the server's decoded event objects, shared and read-only as client-go's
caches are (see LoopbackStream). What it saves is
the wire: TLS, HTTP framing and parsing, the kernel's socket buffers, and a task per request on
each side, which for a `kubeling up` at thousands of nodes is most of the CPU a request costs.

Cancellation is as over HTTP: a caller that gives up (cancelled, timed out) does not cut the
server's work in half. A write is served in a task of its own, which the caller's cancellation does
not reach (as asyncio.shield, with one future and no callbacks of its own); a read (GET) changes
nothing a caller could cut, so it is served in the caller's own task, without a task of its own.

A component started as its own process (`kubeling controller-manager`, `kubeling nodes`, ...) uses
HTTPS as before; the component code does not know which one it has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, MultiDict

if TYPE_CHECKING:
    from kubeling.apiserver.server import ApiServer

Handler = Callable[[Any], Awaitable[web.StreamResponse]]
_END = object()  # queued after a watch stream's last chunk


class _Body:
    """The request body as aiohttp's StreamReader offers it to the handlers."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def is_eof(self) -> bool:
        return True  # all of it is here

    def read_nowait(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        data, self._data = self._data[:n], self._data[n:]
        return data

    async def readexactly(self, n: int) -> bytes:
        data, self._data = self._data[:n], self._data[n:]
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    async def read(self, n: int = -1) -> bytes:
        return self.read_nowait(n)


class LoopbackStream:
    """What the watch handler writes its frames to instead of a chunked HTTP response.

    With ``objects`` the handler writes lists of events (``{"type", "object"}``) instead of bytes: the
    objects are the store's decoded ones, shared by every watcher of the event, which must not
    change them (as client-go's informer caches)."""

    def __init__(self, *, objects: bool = False) -> None:
        self.objects = objects
        self.status = 200
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.content_type = "application/json"
        self.prepared = False
        self.ready = asyncio.Event()
        self.chunks: asyncio.Queue[Any] = asyncio.Queue()

    def enable_chunked_encoding(self) -> None:
        """Nothing to frame: chunks go to the queue as written."""

    async def prepare(self, request: Any) -> None:
        self.prepared = True
        self.ready.set()

    async def write(self, data: Any) -> None:
        self.chunks.put_nowait(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if data:
            self.chunks.put_nowait(data)


class LoopbackRequest(dict[str, Any]):
    """The parts of aiohttp's web.Request the request wrapper and handlers read (a dict, as a Request
    is a mapping for per-request values such as the user and the resource)."""

    __slots__ = ("method", "path", "query", "headers", "body", "content", "content_length", "host",
                 "stream")

    def __init__(self, method: str, path: str, query: MultiDict[str], headers: CIMultiDict[str],
                 body: bytes, *, streaming: bool = False, objects: bool = False) -> None:
        super().__init__()
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.content = _Body(body)
        self.content_length = len(body) if body else None
        self.host = "loopback"
        self.stream = LoopbackStream(objects=objects) if streaming else None

    async def read(self) -> bytes:
        """The whole body, as aiohttp's Request.read (the TokenRequest handler reads it so)."""
        return self.body

    def make_stream_response(self) -> LoopbackStream:
        if self.stream is None:
            self.stream = LoopbackStream()
        return self.stream


class Loopback:
    """Serves requests of this process's components by calling the server's app directly."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self._chain: Handler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # the watches' tasks
        self._writes: dict[asyncio.Future[web.StreamResponse], asyncio.Task[None]] = {}  # answer -> task

    def _handler(self) -> Handler:
        # as HTTP requests: the server's routing behind its request wrapper (built on first use)
        if self._chain is None:
            self._chain = self.server.serving(self.server.route)
        return self._chain

    @staticmethod
    def _request(method: str, path: str, params: dict[str, str] | None, headers: dict[str, str],
                 body: bytes | None, *, streaming: bool = False, objects: bool = False) -> LoopbackRequest:
        path, _, qs = path.partition("?")
        pairs = parse_qsl(qs, keep_blank_values=True) if qs else []
        if params:
            pairs.extend(params.items())
        return LoopbackRequest(method, path, MultiDict(pairs), CIMultiDict(headers), body or b"",
                               streaming=streaming, objects=objects)

    def _start(self, method: str, path: str, params: dict[str, str] | None, headers: dict[str, str],
               body: bytes | None, *, streaming: bool = False, objects: bool = False
               ) -> tuple[LoopbackRequest, asyncio.Task[web.StreamResponse]]:
        request = self._request(method, path, params, headers, body, streaming=streaming, objects=objects)
        task = asyncio.ensure_future(self._serve(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return request, task

    async def _serve(self, request: LoopbackRequest) -> web.StreamResponse:
        try:
            return await self._handler()(request)
        except web.HTTPException as exc:  # as aiohttp answers a raised one (a redirect, 413, ...)
            return exc

    def _spawn(self, request: LoopbackRequest) -> asyncio.Future[web.StreamResponse]:
        """Serve ``request`` in a task of its own; the future returned gets the answer. Cancelling
        that future (the caller gives up) leaves the task running, as over HTTP."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[web.StreamResponse] = loop.create_future()
        self._writes[answer] = loop.create_task(self._serve_into(request, answer))
        return answer

    async def _serve_into(self, request: LoopbackRequest, answer: asyncio.Future[web.StreamResponse]) -> None:
        try:
            resp = await self._serve(request)
        except asyncio.CancelledError:  # close(): the caller stops waiting too
            answer.cancel()
            raise
        except BaseException as exc:
            if not answer.done():
                answer.set_exception(exc)
            raise
        else:
            if not answer.done():  # else the caller gave up: the answer is nobody's
                answer.set_result(resp)
        finally:
            self._writes.pop(answer, None)

    async def request(self, method: str, path: str, *, params: dict[str, str] | None, headers: dict[str, str],
                      body: bytes | None, timeout: float | None) -> tuple[int, str, bytes, CIMultiDict[str]]:
        """One request: status, content type, body, headers. ``timeout``: seconds, or None (no
        network can stall a loopback request, so callers pass one only when they mean a deadline)."""
        request = self._request(method, path, params, headers, body)
        if method == "GET":  # a read: in the caller's task (see the module's docstring)
            if timeout is None:
                resp = await self._serve(request)
            else:
                async with asyncio.timeout(timeout):
                    resp = await self._serve(request)
        elif timeout is None:
            resp = await self._spawn(request)
        else:
            async with asyncio.timeout(timeout):
                resp = await self._spawn(request)
        return resp.status, _content_type(resp), _body_bytes(resp), resp.headers  # type: ignore[return-value]

    async def stream(self, path: str, *, params: dict[str, str] | None,
                     headers: dict[str, str], objects: bool = False) -> AsyncIterator[Any]:
        """A watch: its chunks as the handler writes them; an error answer raises LoopbackError.

        ``objects``: a plain JSON watch yields lists of events (shared, read-only objects, see
        LoopbackStream) rather than bytes; any other answer (a Table, metadata) stays bytes."""
        request, task = self._start("GET", path, params, headers, None, streaming=True, objects=objects)
        stream = request.stream
        assert stream is not None
        stream_ready = asyncio.ensure_future(stream.ready.wait())
        try:
            await asyncio.wait({task, stream_ready}, return_when=asyncio.FIRST_COMPLETED)
            if not stream.prepared:
                resp = await task
                raise LoopbackError(resp.status, _body_bytes(resp))
            task.add_done_callback(lambda _t: stream.chunks.put_nowait(_END))
            while True:
                chunk = await stream.chunks.get()
                if chunk is _END:
                    # whatever the handler wrote after its last awaited write
                    while not stream.chunks.empty():
                        rest = stream.chunks.get_nowait()
                        if rest is not _END:
                            yield rest
                    return
                yield chunk
        finally:
            stream_ready.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def close(self) -> None:
        writes = list(self._writes.items())
        tasks = list(self._tasks) + [task for _, task in writes]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for answer, _ in writes:  # a task cancelled before it started never answered
            answer.cancel()
        self._writes.clear()


class LoopbackError(Exception):
    """A non-streaming answer to a watch (an error Status)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


# Content-Type values that are their own media type (no parameters, lower case): no parsing needed
_PLAIN_TYPES = frozenset({"application/json", "text/plain", "application/vnd.kubernetes.protobuf"})


def _content_type(resp: web.StreamResponse) -> str:
    """resp.content_type, without aiohttp parsing the header when it holds just the media type."""
    raw = resp.headers.get("Content-Type")
    return raw if raw in _PLAIN_TYPES else resp.content_type or ""  # type: ignore[return-value]


def _body_bytes(resp: web.StreamResponse) -> bytes:
    body = getattr(resp, "body", None)  # web.Response keeps its body as bytes
    return bytes(body) if isinstance(body, bytes | bytearray | memoryview) else b""
