"""Upstreams that fail on cue, for the resilience tests (real servers on loopback).

Each server follows a :class:`Cue`: a script of answers consumed one per
request (then the default answer forever). Answers:

- ``"ok"``: HTTP 200 JSON ``{"served_by", "deadline_ms", "headers"}`` / gRPC
  ``b"<name>"``;
- ``"503"``, ``"429"``, ``"409"``, ... : that HTTP status (HTTP only);
- ``"429 retry-after=0.2"``: a status with a ``Retry-After`` header;
- ``"200 x-upstream-retry=yes"``: a status with any header;
- ``"stall 2.0"``: wait that long, then answer 200 / OK (a gRPC stall ends
  early when the call is cancelled);
- ``"reset"``: close the connection without answering (HTTP only);
- gRPC status names (``"UNAVAILABLE"``, ``"RESOURCE_EXHAUSTED"``, ...): abort with it.

Every request is recorded (``seen``) with the deadline it carried.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

WHO = "/test.Echo/Who"


@dataclass(frozen=True)
class Seen:
    """One request as an upstream received it."""

    path: str
    method: str
    headers: dict[str, str]
    deadline_s: float | None  # what the request's deadline left, as the server saw it


@dataclass
class Cue:
    """A script of answers, one per request, then ``default`` (thread-safe)."""

    name: str
    default: str = "ok"
    script: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, *answers: str) -> None:
        with self.lock:
            self.script.extend(answers)

    def set_default(self, answer: str) -> None:
        with self.lock:
            self.default = answer

    def next_answer(self, seen: Seen) -> str:
        with self.lock:
            self.seen.append(seen)
            return self.script.pop(0) if self.script else self.default

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)

    def reset(self, default: str = "ok") -> None:
        with self.lock:
            self.script.clear()
            self.seen.clear()
            self.default = default


def _parse(answer: str) -> tuple[str, dict[str, str]]:
    word, *rest = answer.split()
    headers = dict(part.split("=", 1) for part in rest if "=" in part)
    if word == "stall":
        headers["seconds"] = rest[0] if rest else "60"
    return word, headers


class _Handler(BaseHTTPRequestHandler):
    server_version = "cue"
    protocol_version = "HTTP/1.1"

    def _drain_chunks(self) -> None:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            self.rfile.read(size + 2)  # the chunk and its CRLF (the last: just CRLF)
            if size == 0:
                return

    def _answer(self) -> None:
        cue: Cue = self.server.cue  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        elif "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            self._drain_chunks()  # else the next request on this connection reads them
        headers = {name.lower(): value for name, value in self.headers.items()}
        deadline_ms = headers.get("x-meshlib-deadline-ms")
        deadline = None if deadline_ms is None else int(deadline_ms) / 1000.0
        word, extra = _parse(cue.next_answer(Seen(self.path, self.command, headers, deadline)))
        if word == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        status = 200
        if word == "stall":
            time.sleep(float(extra.pop("seconds")))
        elif word.isdigit():
            status = int(word)
        body = json.dumps({"served_by": cue.name, "deadline_ms": deadline_ms}).encode()
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        # The caller may have given up first (a timeout under test): nothing to answer.
        with suppress(BrokenPipeError, ConnectionResetError):
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Upstream:
    cue: Cue
    port: int

    @property
    def name(self) -> str:
        return self.cue.name


@contextmanager
def http_upstreams(names: Sequence[str]) -> Iterator[list[Upstream]]:
    """Threaded HTTP/1.1 servers on 127.0.0.1 following their cues."""
    with ExitStack() as stack:
        upstreams = []
        for name in names:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.cue = Cue(name)  # type: ignore[attr-defined]
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            upstreams.append(Upstream(server.cue, server.server_address[1]))  # type: ignore[attr-defined]
        yield upstreams


def _grpc_handler(cue: Cue) -> Any:
    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        remaining = context.time_remaining()
        word, extra = _parse(cue.next_answer(Seen(WHO, "POST", metadata, remaining)))
        if word == "stall":
            limit = time.monotonic() + float(extra["seconds"])
            while time.monotonic() < limit and context.is_active():
                time.sleep(0.005)
        elif word != "ok":
            context.abort(getattr(grpc.StatusCode, word), f"{cue.name}: cued {word}")
        return cue.name.encode()

    return grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )


def _stopper(server: grpc.Server) -> Callable[[], None]:
    def stop() -> None:
        server.stop(None).wait()

    return stop


@contextmanager
def grpc_upstreams(
    names: Sequence[str], *, interceptors: Sequence[Any] = ()
) -> Iterator[list[Upstream]]:
    """gRPC servers on 127.0.0.1 answering ``/test.Echo/Who`` by their cues."""
    with ExitStack() as stack:
        upstreams = []
        for name in names:
            cue = Cue(name)
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=16), interceptors=list(interceptors)
            )
            server.add_generic_rpc_handlers((_grpc_handler(cue),))
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            stack.callback(_stopper(server))
            upstreams.append(Upstream(cue, port))
        yield upstreams
