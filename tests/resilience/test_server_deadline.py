"""Server side: the caller's deadline reaches handlers (gRPC sync + aio, ASGI)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from meshlib.asgi import DeadlineMiddleware
from meshlib.errors import CircuitBreakerOverflow, CircuitOpenError, DeadlineExceeded
from meshlib.resilience.deadline import remaining_time
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.transport.grpc_server import AioDeadlineServerInterceptor, DeadlineServerInterceptor

SERVICE = "test.Deadline"


def _pack(value: float | None) -> bytes:
    return struct.pack("!d", -1.0 if value is None else value)


def _unpack(data: bytes) -> float | None:
    (value,) = struct.unpack("!d", data)
    return None if value < 0 else value


def _identity(data: bytes) -> bytes:
    return data


def _raise(kind: bytes) -> None:
    if kind == b"deadline":
        raise DeadlineExceeded("downstream deadline exceeded")
    if kind == b"overflow":
        raise CircuitBreakerOverflow("full", cluster="c", threshold="max_requests", limit=1)


def _sync_handlers() -> Any:
    def remaining(request: bytes, context: Any) -> bytes:
        _raise(request)
        return _pack(remaining_time())

    def remaining_stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield _pack(remaining_time())
        yield _pack(remaining_time())

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Remaining": grpc.unary_unary_rpc_method_handler(remaining, _identity, _identity),
            "Stream": grpc.unary_stream_rpc_method_handler(remaining_stream, _identity, _identity),
        },
    )


@pytest.fixture
def sync_server() -> Iterator[tuple[str, TokenBucket]]:
    bucket = TokenBucket(max_tokens=1000, tokens_per_fill=1000, fill_interval_s=60.0)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[DeadlineServerInterceptor(rate_limit=bucket)],
    )
    server.add_generic_rpc_handlers((_sync_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", bucket
    finally:
        server.stop(None).wait()


def test_sync_handler_runs_under_the_callers_deadline(sync_server: tuple[str, TokenBucket]) -> None:
    address, _bucket = sync_server
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Remaining", _identity, _identity)
        seen = _unpack(call(b"", timeout=2.0))
        assert seen is not None and 1.0 < seen <= 2.05
        assert _unpack(call(b"")) is None
        stream = channel.unary_stream(f"/{SERVICE}/Stream", _identity, _identity)
        values = [_unpack(v) for v in stream(b"", timeout=3.0)]
        assert all(v is not None and 2.0 < v <= 3.05 for v in values)


def test_sync_resilience_errors_and_rate_limit_become_statuses(
    sync_server: tuple[str, TokenBucket],
) -> None:
    address, bucket = sync_server
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Remaining", _identity, _identity)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"deadline", timeout=5.0)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as caught:
            call(b"overflow", timeout=5.0)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        while bucket.try_acquire():
            pass
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=5.0)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "token bucket empty" in (caught.value.details() or "")


def _aio_handlers() -> Any:
    async def remaining(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(0)
        _raise(request)
        return _pack(remaining_time())

    async def remaining_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield _pack(remaining_time())
        await asyncio.sleep(0)
        yield _pack(remaining_time())

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Remaining": grpc.unary_unary_rpc_method_handler(remaining, _identity, _identity),
            "Stream": grpc.unary_stream_rpc_method_handler(remaining_stream, _identity, _identity),
        },
    )


async def test_aio_handler_runs_under_the_callers_deadline() -> None:
    bucket = TokenBucket(max_tokens=3, tokens_per_fill=1, fill_interval_s=60.0)
    server = grpc.aio.server(interceptors=[AioDeadlineServerInterceptor(rate_limit=bucket)])
    server.add_generic_rpc_handlers((_aio_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(f"/{SERVICE}/Remaining", _identity, _identity)
            seen = _unpack(await call(b"", timeout=2.0))
            assert seen is not None and 1.0 < seen <= 2.05
            stream = channel.unary_stream(f"/{SERVICE}/Stream", _identity, _identity)
            values = [_unpack(v) async for v in stream(b"", timeout=3.0)]
            assert len(values) == 2 and all(v is not None and 2.0 < v <= 3.05 for v in values)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"deadline", timeout=5.0)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", timeout=5.0)  # the bucket (3 tokens) is empty now
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


# --- ASGI ---------------------------------------------------------------------------


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/open":
        raise CircuitOpenError("breaker open", name="b", state="OPEN", retry_after_s=1.0)
    if path == "/deadline":
        raise DeadlineExceeded("downstream deadline")
    body = repr(remaining_time()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_asgi_middleware_reads_the_deadline_headers() -> None:
    async with _client(DeadlineMiddleware(_asgi_app)) as client:
        seen = float((await client.get("/", headers={"x-meshlib-deadline-ms": "1500"})).text)
        assert 1.0 < seen <= 1.5
        seen = float((await client.get("/", headers={"grpc-timeout": "700m"})).text)
        assert 0.5 < seen <= 0.7
        assert (await client.get("/")).text == "None"
        expired = await client.get("/", headers={"x-meshlib-deadline-ms": "0"})
        assert expired.status_code == 504
        bad = await client.get("/", headers={"x-meshlib-deadline-ms": "soon"})
        assert bad.status_code == 400 and "x-meshlib-deadline-ms" in bad.text


async def test_asgi_middleware_answers_resilience_errors_and_rate_limits() -> None:
    bucket = TokenBucket(max_tokens=3, tokens_per_fill=1, fill_interval_s=60.0)
    async with _client(DeadlineMiddleware(_asgi_app, rate_limit=bucket)) as client:
        opened = await client.get("/open")
        assert opened.status_code == 503
        assert opened.headers["x-envoy-overloaded"] == "true"
        assert (await client.get("/deadline")).status_code == 504
        assert (await client.get("/")).status_code == 200
        limited = await client.get("/")
        assert limited.status_code == 429 and limited.text == "local_rate_limited"
