"""Real backends on loopback that answer with who they are.

gRPC: a generic service `/test.Echo/Who` (unary, bytes in, bytes out) and
`/test.Echo/Stream` (server streaming, three answers), each answering
b"<name>". HTTP: a threaded stdlib server answering JSON {"served_by": name}.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

WHO = "/test.Echo/Who"
STREAM = "/test.Echo/Stream"


@dataclass
class Backend:
    name: str
    port: int


def _echo_handler(name: str) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        return name.encode()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(3):
            yield name.encode()

    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Who": grpc.unary_unary_rpc_method_handler(who),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )


@contextmanager
def grpc_backends(count: int, prefix: str = "g") -> Iterator[list[Backend]]:
    servers: list[grpc.Server] = []
    backends: list[Backend] = []
    try:
        for i in range(count):
            name = f"{prefix}{i}"
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            server.add_generic_rpc_handlers((_echo_handler(name),))
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            servers.append(server)
            backends.append(Backend(name, port))
        yield backends
    finally:
        for server in servers:
            server.stop(grace=None).wait(5)


class _Handler(BaseHTTPRequestHandler):
    server_version = "backend"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def do_GET(self) -> None:
        name = self.server.backend_name  # type: ignore[attr-defined]
        body = json.dumps(
            {"served_by": name, "path": self.path, "host": self.headers.get("host")}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def http_backends(count: int, prefix: str = "h") -> Iterator[list[Backend]]:
    servers: list[ThreadingHTTPServer] = []
    backends: list[Backend] = []
    try:
        for i in range(count):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.backend_name = f"{prefix}{i}"  # type: ignore[attr-defined]
            server.connections = set()  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            backends.append(Backend(f"{prefix}{i}", server.server_address[1]))
        yield backends
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
            # A stopped backend must not keep answering on keep-alive connections.
            for connection in list(server.connections):  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
