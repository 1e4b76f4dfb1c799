"""One request through each server adapter, served for real on loopback.

``run(adapter, policies, request)`` starts a server of that kind with the
policies (a sync ``grpc.server``, a ``grpc.aio`` server, or an ASGI app under
uvicorn), sends one request and returns what the caller saw as an
:class:`Answer`: the status and text, and, when the handler ran, what it saw
(the deadline left, the tag a wrap put in context). gRPC runs a unary and a
server-streaming call and checks they agree.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpx

from meshlib.asgi import MeshMiddleware
from meshlib.resilience.deadline import remaining_time
from meshlib.serving import ServerPolicy
from meshlib.transport.grpc_server import AioMeshServerInterceptor, MeshServerInterceptor
from tests.support.asgi_server import serve_asgi

SERVICE = "test.Probe"
ADAPTERS = ("grpc-sync", "grpc-aio", "asgi")

#: What a wrap policy in the tests puts in context for the handler to see.
TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_tag", default=None)


@dataclass(frozen=True)
class Request:
    headers: dict[str, str] = field(default_factory=dict)
    deadline_ms: int | None = None  # gRPC: the call's timeout; HTTP: x-meshlib-deadline-ms


@dataclass(frozen=True)
class Answer:
    ok: bool
    status: int | grpc.StatusCode  # HTTP status, or the gRPC code
    text: str  # HTTP body, or gRPC details
    probe: dict[str, Any] | None = None  # what the handler saw, when it ran


def _probe() -> bytes:
    return json.dumps({"remaining": remaining_time(), "tag": TAG.get()}).encode()


def _identity(data: bytes) -> bytes:
    return data


# --- gRPC -----------------------------------------------------------------------------


def _sync_handlers() -> Any:
    def unary(request: bytes, context: Any) -> bytes:
        return _probe()

    def stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield _probe()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
            "Stream": grpc.unary_stream_rpc_method_handler(stream, _identity, _identity),
        },
    )


def _aio_handlers() -> Any:
    async def unary(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(0)
        return _probe()

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        yield _probe()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
            "Stream": grpc.unary_stream_rpc_method_handler(stream, _identity, _identity),
        },
    )


def _grpc_answer(call: Callable[[], bytes]) -> Answer:
    try:
        return Answer(True, grpc.StatusCode.OK, "", json.loads(call()))
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        return Answer(False, error.code(), error.details() or "")


def _agree(unary: Answer, stream: Answer) -> Answer:
    assert (unary.ok, unary.status, unary.text) == (stream.ok, stream.status, stream.text)
    return unary


def _call_kwargs(request: Request) -> dict[str, Any]:
    timeout = None if request.deadline_ms is None else request.deadline_ms / 1000
    return {"metadata": tuple(request.headers.items()), "timeout": timeout}


def run_grpc_sync(
    request: Request,
    policies: Sequence[ServerPolicy] | None = None,
    make_server: Callable[[], grpc.Server] | None = None,
) -> Answer:
    server = (
        make_server()
        if make_server is not None
        else grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            interceptors=[MeshServerInterceptor(policies=policies)],
        )
    )
    server.add_generic_rpc_handlers((_sync_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary", _identity, _identity)
            stream = channel.unary_stream(f"/{SERVICE}/Stream", _identity, _identity)
            kwargs = _call_kwargs(request)
            return _agree(
                _grpc_answer(lambda: unary(b"", **kwargs)),
                _grpc_answer(lambda: next(iter(stream(b"", **kwargs)))),
            )
    finally:
        server.stop(None).wait()


async def _aio_answer(call: Callable[[], Awaitable[bytes]]) -> Answer:
    try:
        return Answer(True, grpc.StatusCode.OK, "", json.loads(await call()))
    except grpc.aio.AioRpcError as error:
        return Answer(False, error.code(), error.details() or "")


async def run_grpc_aio(
    request: Request,
    policies: Sequence[ServerPolicy] | None = None,
    make_server: Callable[[], grpc.aio.Server] | None = None,
) -> Answer:
    server = (
        make_server()
        if make_server is not None
        else grpc.aio.server(interceptors=[AioMeshServerInterceptor(policies=policies)])
    )
    server.add_generic_rpc_handlers((_aio_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary", _identity, _identity)
            stream = channel.unary_stream(f"/{SERVICE}/Stream", _identity, _identity)
            kwargs = _call_kwargs(request)

            async def first_of_stream() -> bytes:
                async for item in stream(b"", **kwargs):
                    first: bytes = item
                    return first
                raise AssertionError("the stream sent nothing")

            return _agree(
                await _aio_answer(lambda: unary(b"", **kwargs)),
                await _aio_answer(first_of_stream),
            )
    finally:
        await server.stop(None)


# --- ASGI -----------------------------------------------------------------------------


async def probe_app(scope: Any, receive: Any, send: Any) -> None:
    body = _probe()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def run_asgi(
    request: Request, policies: Sequence[ServerPolicy] | None = None, app: Any = None
) -> Answer:
    app = app if app is not None else MeshMiddleware(probe_app, policies=policies)
    headers = dict(request.headers)
    if request.deadline_ms is not None:
        headers["x-meshlib-deadline-ms"] = str(request.deadline_ms)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10.0) as client:
        answer = client.get("/probe/path", headers=headers)
    if answer.status_code == 200:
        return Answer(True, 200, "", answer.json())
    return Answer(False, answer.status_code, answer.text)


async def run(adapter: str, policies: Sequence[ServerPolicy], request: Request) -> Answer:
    """``request`` through ``adapter`` (one of :data:`ADAPTERS`) applying ``policies``."""
    if adapter == "grpc-sync":
        return await asyncio.to_thread(run_grpc_sync, request, policies)
    if adapter == "grpc-aio":
        return await run_grpc_aio(request, policies)
    assert adapter == "asgi", adapter
    return await asyncio.to_thread(run_asgi, request, policies)
