"""The clients compared by the overhead benchmark, each reduced to one call.

Every variant in a group calls the same server: bare clients by its real
address, meshlib and grpcio's own xDS client by its mesh name, so the
difference between them is the client-side cost of the mesh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio
import httpx
from bench_stack import GRPC_HOST, GRPC_PORT, HTTP_HOST, HTTP_PORT, POOL_IDLE_TIMEOUT_S, Stack

import meshlib

ECHO_METHOD = "/bench.Echo/Ping"
PAYLOAD = b"x" * 64
CALL_TIMEOUT_S = 10.0
BARE = "bare"
#: The pool settings the mesh config gives meshlib's endpoint pools (its idle timeout):
#: a bare client with httpx's default 5 s would drop the extra connections a
#: concurrent burst opened while meshlib's pool keeps them, and each request scans them.
BARE_LIMITS = httpx.Limits(keepalive_expiry=POOL_IDLE_TIMEOUT_S)


@dataclass
class SyncVariant:
    group: str
    client: str
    call: Callable[[], object]
    close: Callable[[], object]


@dataclass
class AsyncVariant:
    group: str
    client: str
    call: Callable[[], Awaitable[object]]
    close: Callable[[], Awaitable[object]]


def http_sync_variant(group: str, client_name: str, client: httpx.Client, url: str) -> SyncVariant:
    def call() -> object:
        return client.get(url).raise_for_status()

    return SyncVariant(group, client_name, call, client.close)


def http_async_variant(
    group: str, client_name: str, client: httpx.AsyncClient, url: str
) -> AsyncVariant:
    async def call() -> object:
        response = await client.get(url)
        return response.raise_for_status()

    return AsyncVariant(group, client_name, call, client.aclose)


def grpc_sync_variant(group: str, client_name: str, channel: grpc.Channel) -> SyncVariant:
    ping = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

    def call() -> object:
        return ping(PAYLOAD, timeout=CALL_TIMEOUT_S)

    return SyncVariant(group, client_name, call, channel.close)


def grpc_async_variant(group: str, client_name: str, channel: grpc.aio.Channel) -> AsyncVariant:
    ping = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

    async def call() -> object:
        return await ping(PAYLOAD, timeout=CALL_TIMEOUT_S)

    async def close() -> None:
        await channel.close(grace=None)

    return AsyncVariant(group, client_name, call, close)


def http_sync_variants(stack: Stack, mesh: meshlib.Mesh) -> list[SyncVariant]:
    group = "httpx sync"
    bare_url = f"http://127.0.0.1:{stack.http_port}/ping"
    return [
        http_sync_variant(group, BARE, httpx.Client(limits=BARE_LIMITS), bare_url),
        http_sync_variant(
            group, "meshlib", mesh.http_client(), f"http://{HTTP_HOST}:{HTTP_PORT}/ping"
        ),
    ]


def http_async_variants(stack: Stack, mesh: meshlib.Mesh) -> list[AsyncVariant]:
    """Call inside the running event loop that will use the clients."""
    group = "httpx async"
    bare_url = f"http://127.0.0.1:{stack.http_port}/ping"
    mesh_url = f"http://{HTTP_HOST}:{HTTP_PORT}/ping"
    return [
        http_async_variant(group, BARE, httpx.AsyncClient(limits=BARE_LIMITS), bare_url),
        http_async_variant(group, "meshlib", mesh.async_http_client(), mesh_url),
    ]


def grpc_sync_variants(stack: Stack, mesh: meshlib.Mesh) -> list[SyncVariant]:
    group = "grpc sync"
    target = f"xds:///{GRPC_HOST}:{GRPC_PORT}"
    return [
        grpc_sync_variant(group, BARE, grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}")),
        grpc_sync_variant(group, "meshlib", mesh.grpc_channel(target)),
        grpc_sync_variant(group, "grpcio xds", grpc.insecure_channel(target)),
    ]


def grpc_async_variants(stack: Stack, mesh: meshlib.Mesh) -> list[AsyncVariant]:
    """Call inside the running event loop that will use the channels."""
    group = "grpc aio"
    target = f"xds:///{GRPC_HOST}:{GRPC_PORT}"
    return [
        grpc_async_variant(group, BARE, grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}")),
        grpc_async_variant(group, "meshlib", mesh.aio_grpc_channel(target)),
        grpc_async_variant(group, "grpcio xds", grpc.aio.insecure_channel(target)),
    ]
