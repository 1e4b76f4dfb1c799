"""The route timeout covers the whole response, body included (as Envoy's does): a body
that stalls or trickles after the headers fails the read with httpx.ReadTimeout naming
the route timeout, for sync and async clients, read at once or streamed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import meshlib
from meshlib.transport.http_body_deadline import RouteTimedBody
from meshlib.xds_client.resources import PathMatchKind, Route, RouteAction, RouteMatch
from tests.routing.fake_xds import FakeXds
from tests.transport.route_setup import serve_routes

TARGET = "slowbody:8080"
BODY = 64
ROUTE_TIMEOUT_S = 1.0


class _Handler(BaseHTTPRequestHandler):
    """``/stall``: headers and one byte, then nothing; ``/trickle``: a byte every 0.2 s
    (well past the route timeout); ``/fast``: the whole body at once."""

    protocol_version = "HTTP/1.1"
    server: SlowBodyServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BODY))
        self.end_headers()
        if self.path == "/fast":
            self.wfile.write(b"x" * BODY)
            return
        self.wfile.write(b"x")
        self.wfile.flush()
        for _ in range(BODY - 1):
            if self.server.released.wait(10.0 if self.path == "/stall" else 0.2):
                return
            self.wfile.write(b"x")
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class SlowBodyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.released = threading.Event()
        self.port: int = self.server_address[1]


@contextmanager
def slow_body_server() -> Iterator[SlowBodyServer]:
    server = SlowBodyServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def publish(feed: FakeXds, port: int) -> None:
    action = RouteAction(cluster="slow", request_timeout_s=ROUTE_TIMEOUT_S)
    route = Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), action)
    serve_routes(feed, TARGET, [route], {"slow": [port]})


def read_sync(http: httpx.Client, path: str, streamed: bool) -> bytes:
    if not streamed:
        return http.get(f"http://{TARGET}{path}").content
    with http.stream("GET", f"http://{TARGET}{path}") as response:
        return b"".join(response.iter_bytes())


async def read_async(http: httpx.AsyncClient, path: str, streamed: bool) -> bytes:
    if not streamed:
        return (await http.get(f"http://{TARGET}{path}")).content
    async with http.stream("GET", f"http://{TARGET}{path}") as response:
        return b"".join([chunk async for chunk in response.aiter_bytes()])


SLOW = pytest.mark.parametrize("path", ["/stall", "/trickle"])
STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["read", "streamed"])


@SLOW
@STREAMED
def test_sync_body_past_the_route_timeout_fails_naming_it(
    feed: FakeXds, path: str, streamed: bool
) -> None:
    with slow_body_server() as server, meshlib.Mesh.with_xds_client(feed) as mesh:
        publish(feed, server.port)
        with mesh.http_client() as http:
            assert read_sync(http, "/fast", streamed) == b"x" * BODY
            with pytest.raises(httpx.ReadTimeout, match="route timeout") as failed:
                read_sync(http, path, streamed)
            assert f"127.0.0.1:{server.port}" in str(failed.value)
            assert read_sync(http, "/fast", streamed) == b"x" * BODY  # the pool still serves


@SLOW
@STREAMED
async def test_async_body_past_the_route_timeout_fails_naming_it(
    feed: FakeXds, path: str, streamed: bool
) -> None:
    with slow_body_server() as server:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            publish(feed, server.port)
            async with mesh.async_http_client() as http:
                assert await read_async(http, "/fast", streamed) == b"x" * BODY
                with pytest.raises(httpx.ReadTimeout, match="route timeout") as failed:
                    await read_async(http, path, streamed)
                assert f"127.0.0.1:{server.port}" in str(failed.value)
                assert await read_async(http, "/fast", streamed) == b"x" * BODY


def test_a_body_within_the_route_timeout_is_untouched(feed: FakeXds) -> None:
    """A trickling body is read on while the route's deadline is ahead (the bound is the
    deadline, not each read)."""
    with slow_body_server() as server, meshlib.Mesh.with_xds_client(feed) as mesh:
        action = RouteAction(cluster="slow", request_timeout_s=60.0)
        route = Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), action)
        serve_routes(feed, TARGET, [route], {"slow": [server.port]})
        with mesh.http_client() as http:
            started = time.monotonic()
            with http.stream("GET", f"http://{TARGET}/trickle") as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() - started > 0.5:
                        break  # a few trickled reads are enough to show none is cut
            assert b"".join(chunks).startswith(b"xx")


@STREAMED
def test_without_the_read_cut_a_stall_still_fails_naming_the_route_timeout(
    feed: FakeXds, streamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for an httpcore that would not reread the request's read timeout when
    the body starts: the first read's own timeout ends past the deadline, and is named
    the route timeout's."""
    monkeypatch.setattr(RouteTimedBody, "_start", lambda self: None)
    with slow_body_server() as server, meshlib.Mesh.with_xds_client(feed) as mesh:
        publish(feed, server.port)
        with mesh.http_client() as http, pytest.raises(httpx.ReadTimeout, match="route timeout"):
            read_sync(http, "/stall", streamed)
