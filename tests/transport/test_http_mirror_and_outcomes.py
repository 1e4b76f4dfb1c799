"""Mirroring and per-call outcome reports through the httpx transports."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx

import meshlib
from meshlib.balancing.picker import Outcome
from meshlib.xds_client.resources import (
    PathMatchKind,
    RequestMirrorPolicy,
    Route,
    RouteAction,
    RouteMatch,
)
from tests.routing.fake_xds import FakeXds
from tests.transport.http_servers import echo_servers
from tests.transport.polling import eventually, eventually_async
from tests.transport.recording import Recorder
from tests.transport.route_setup import serve_routes

TARGET = "web:8080"


def mirrored(*policies: RequestMirrorPolicy) -> Route:
    action = RouteAction(cluster="main", request_mirror_policies=policies)
    return Route("m", RouteMatch(PathMatchKind.PREFIX, "/"), action)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_mirror_copies_the_request_to_the_shadow(feed: FakeXds) -> None:
    with echo_servers(2) as (main, shadow), meshlib.Mesh.with_xds_client(feed) as mesh:
        route = mirrored(RequestMirrorPolicy("shadow"))
        serve_routes(feed, TARGET, [route], {"main": [main.port], "shadow": [shadow.port]})
        with mesh.http_client() as http:
            reply = http.post(f"http://{TARGET}/orders?id=7", content=b"payload")
            assert reply.json()["port"] == main.port
            eventually(lambda: len(shadow.seen) == 1)
            copy = shadow.seen[0]
            assert copy["host"] == "web-shadow:8080"
            assert (copy["path"], copy["method"], copy["body"]) == (
                "/orders?id=7",
                "POST",
                "payload",
            )
            assert main.seen[0]["host"] == TARGET
            stats = http._transport.mirror_stats()  # type: ignore[attr-defined]
            eventually(lambda: stats.as_dict()["sent"] == 1)


async def test_async_mirror_copies_the_request_to_the_shadow(feed: FakeXds) -> None:
    with echo_servers(2) as (main, shadow):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            route = mirrored(RequestMirrorPolicy("shadow", disable_shadow_host_suffix_append=True))
            serve_routes(feed, TARGET, [route], {"main": [main.port], "shadow": [shadow.port]})
            async with mesh.async_http_client() as http:
                reply = await http.put(f"http://{TARGET}/x", content=b"abc")
                assert reply.json()["port"] == main.port
                await eventually_async(lambda: len(shadow.seen) == 1)
                assert shadow.seen[0]["host"] == TARGET and shadow.seen[0]["body"] == "abc"


def test_failing_or_streaming_mirrors_never_fail_the_caller(feed: FakeXds) -> None:
    with echo_servers(1) as (main,), meshlib.Mesh.with_xds_client(feed) as mesh:
        route = mirrored(RequestMirrorPolicy("dead"))
        serve_routes(feed, TARGET, [route], {"main": [main.port], "dead": [closed_port()]})
        with mesh.http_client() as http:
            stats = http._transport.mirror_stats()  # type: ignore[attr-defined]
            assert http.get(f"http://{TARGET}/").status_code == 200
            eventually(lambda: stats.as_dict()["failed"] == 1)

            def body() -> Iterator[bytes]:
                yield b"streamed"

            assert http.post(f"http://{TARGET}/", content=body()).status_code == 200
            assert stats.as_dict()["skipped_streaming"] == 1
            assert stats.as_dict()["sent"] == 0


async def test_async_failing_mirror_never_fails_the_caller(feed: FakeXds) -> None:
    with echo_servers(1) as (main,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            route = mirrored(RequestMirrorPolicy("dead"))
            serve_routes(feed, TARGET, [route], {"main": [main.port], "dead": [closed_port()]})
            async with mesh.async_http_client() as http:
                stats = http._transport.mirror_stats()  # type: ignore[attr-defined]
                assert (await http.get(f"http://{TARGET}/")).status_code == 200
                await eventually_async(lambda: stats.as_dict()["failed"] == 1)


def test_every_call_is_reported_with_its_outcome(feed: FakeXds, recorder: Recorder) -> None:
    dead = closed_port()
    with echo_servers(1) as (server,), meshlib.Mesh.with_xds_client(feed) as mesh:
        route = Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main"))
        serve_routes(feed, TARGET, [route], {"main": [server.port]})
        here = f"127.0.0.1:{server.port}"
        with mesh.http_client() as http:
            for status in (200, 404, 503, 500):
                server.status = status
                assert http.get(f"http://{TARGET}/").status_code == status
            serve_routes(feed, TARGET, [route], {"main": [dead]})
            feed.flush()
            refused = http.get(f"http://{TARGET}/")
            assert refused.status_code == 503  # Envoy's answer; the error kept with it
            assert isinstance(refused.extensions["meshlib.error"], httpx.ConnectError)
    assert recorder.finished == [
        (here, Outcome.SUCCESS),
        (here, Outcome.SUCCESS),
        (here, Outcome.GATEWAY_ERROR),
        (here, Outcome.ERROR_5XX),
        (f"127.0.0.1:{dead}", Outcome.LOCAL_ORIGIN_FAILURE),
    ]
    assert len(recorder.started) == 5
