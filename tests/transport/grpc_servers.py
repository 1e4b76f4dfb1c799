"""Real gRPC servers on 127.0.0.1:0 with a bytes-in/bytes-out echo service (tests only).

Every reply names the serving port, so tests can see which endpoint a call hit.
Methods: /test.Echo/Unary, /ServerStream (3 replies), /ClientStream (joins),
/BidiStream (one reply per request), /Metadata (the call's metadata as JSON).
``RECEIVED[port]`` lists the unary requests each server got.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/BidiStream"
METADATA = f"/{SERVICE}/Metadata"

RECEIVED: dict[int, list[bytes]] = {}
_received_lock = threading.Lock()


def _handler(port: int) -> grpc.GenericRpcHandler[Any, Any]:
    def tag(data: bytes) -> bytes:
        return f"{port}:".encode() + data

    def unary(request: bytes, context: Any) -> bytes:
        with _received_lock:
            RECEIVED.setdefault(port, []).append(request)
        if request == b"fail":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail")
        return tag(request)

    def metadata(request: bytes, context: Any) -> bytes:
        pairs = [[k, v] for k, v in context.invocation_metadata() if isinstance(v, str)]
        return tag(json.dumps(pairs).encode())

    def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
        for i in range(3):
            yield tag(request + str(i).encode())

    def client_stream(requests: Iterable[bytes], context: Any) -> bytes:
        return tag(b"+".join(requests))

    def bidi(requests: Iterable[bytes], context: Any) -> Iterator[bytes]:
        for request in requests:
            yield tag(request)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


@contextmanager
def echo_grpc_servers(count: int) -> Iterator[list[int]]:
    """Start ``count`` servers; yields their ports; stops them all."""
    servers: list[grpc.Server] = []
    ports: list[int] = []
    try:
        for _ in range(count):
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            port = server.add_insecure_port("127.0.0.1:0")
            server.add_generic_rpc_handlers((_handler(port),))
            server.start()
            servers.append(server)
            ports.append(port)
        yield ports
    finally:
        for server in servers:
            server.stop(None).wait(5)


def port_of(reply: bytes) -> int:
    return int(reply.split(b":", 1)[0])
