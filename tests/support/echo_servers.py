"""Backends for the traffic tests: they tell who served a call, echo what arrived,
record every request, can be switched to fail every call, and can be stopped and
started again on the same port (to take a locality down and bring it back).

HTTP: any method answers JSON ``{"served_by", "method", "path", "host",
"headers"}`` (header names lower case), or 503 while failing.
gRPC: ``/test.Echo/Who`` (unary, bytes in, bytes out) answers ``b"<name>"``, or
UNAVAILABLE while failing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

WHO = "/test.Echo/Who"


@dataclass(frozen=True)
class SeenRequest:
    """One request as a backend received it."""

    method: str
    path: str
    host: str
    headers: dict[str, str]


@dataclass
class _State:
    name: str
    failing: bool = False
    delay_s: float = 0.0  # answer this much later (a slow backend)
    seen: list[SeenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: SeenRequest) -> None:
        with self.lock:
            self.seen.append(request)


class _EchoHandler(BaseHTTPRequestHandler):
    server_version = "echo"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait out a 40 ms delayed ACK

    def _answer(self) -> None:
        state: _State = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        headers: dict[str, str] = {}  # repeated headers joined with ", " (RFC 9110)
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        seen = SeenRequest(self.command, self.path, headers.get("host", ""), headers)
        state.record(seen)
        if state.delay_s:
            time.sleep(state.delay_s)
        if state.failing:
            body = json.dumps({"served_by": state.name, "failing": True}).encode()
            self.send_response(503)
        else:
            body = json.dumps(
                {
                    "served_by": state.name,
                    "method": seen.method,
                    "path": seen.path,
                    "host": seen.host,
                    "headers": headers,
                }
            ).encode()
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-backend", state.name)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ClosingHTTPServer(ThreadingHTTPServer):
    """Closes its open keep-alive connections too when stopped (a real outage)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _EchoHandler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller hanging up (or ``stop`` cutting it off) is not a test failure."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class HttpEcho:
    """One HTTP backend on 127.0.0.1; ``stop`` then ``start`` keeps its port."""

    def __init__(self, name: str) -> None:
        self.state = _State(name)
        self.port = 0
        self._server: _ClosingHTTPServer | None = None

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def failing(self) -> bool:
        return self.state.failing

    @failing.setter
    def failing(self, value: bool) -> None:
        self.state.failing = value

    def seen(self) -> list[SeenRequest]:
        with self.state.lock:
            return list(self.state.seen)

    def start(self) -> None:
        server = _ClosingHTTPServer(("127.0.0.1", self.port), self.state)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()


def _who_handler(state: _State) -> grpc.GenericRpcHandler[Any, Any]:
    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        state.record(SeenRequest("POST", WHO, metadata.get(":authority", ""), metadata))
        if state.delay_s:
            time.sleep(state.delay_s)
        if state.failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{state.name} is failing")
        return state.name.encode()

    return grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )


class GrpcEcho:
    """One gRPC backend on 127.0.0.1; ``stop`` then ``start`` keeps its port."""

    def __init__(self, name: str) -> None:
        self.state = _State(name)
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def failing(self) -> bool:
        return self.state.failing

    @failing.setter
    def failing(self, value: bool) -> None:
        self.state.failing = value

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        server.add_generic_rpc_handlers((_who_handler(self.state),))
        bound = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if bound == 0:
            raise RuntimeError(f"gRPC backend {self.name}: cannot bind 127.0.0.1:{self.port}")
        server.start()
        self.port = bound
        self._server = server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(5)


@contextmanager
def http_echoes(names: Sequence[str]) -> Iterator[list[HttpEcho]]:
    """Started HTTP backends, one per name; all stopped when the block ends."""
    with ExitStack() as stack:
        echoes: list[HttpEcho] = []
        for name in names:
            echo = HttpEcho(name)
            echo.start()
            stack.callback(echo.stop)
            echoes.append(echo)
        yield echoes


@contextmanager
def grpc_echoes(names: Sequence[str]) -> Iterator[list[GrpcEcho]]:
    """Started gRPC backends, one per name; all stopped when the block ends."""
    with ExitStack() as stack:
        echoes: list[GrpcEcho] = []
        for name in names:
            echo = GrpcEcho(name)
            echo.start()
            stack.callback(echo.stop)
            echoes.append(echo)
        yield echoes
