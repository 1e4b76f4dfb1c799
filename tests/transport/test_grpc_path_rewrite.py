"""gRPC calls follow the route's path rewrite (Envoy rewrites a gRPC call's ``:path``)."""

from __future__ import annotations

import meshlib
from meshlib.xds_client.resources import (
    PathMatchKind,
    RegexRewrite,
    Route,
    RouteAction,
    RouteMatch,
)
from tests.routing.fake_xds import FakeXds
from tests.transport.grpc_servers import RECEIVED, SERVER_STREAM, echo_grpc_servers, port_of
from tests.transport.route_setup import serve_routes

TARGET = "echo:50051"

ROUTES = [
    Route(
        "renamed",
        RouteMatch(PathMatchKind.PREFIX, "/old.Svc/"),
        RouteAction(cluster="main", prefix_rewrite="/test.Echo/"),
    ),
    Route(
        "regex",
        RouteMatch(PathMatchKind.PREFIX, "/legacy.Echo/"),
        RouteAction(cluster="main", regex_rewrite=RegexRewrite(r"^/legacy\.Echo/", "/test.Echo/")),
    ),
    Route("main", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main")),
]


def test_sync_calls_use_the_rewritten_method(feed: FakeXds) -> None:
    with echo_grpc_servers(1) as (port,), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, ROUTES, {"main": [port]})
        channel = mesh.grpc_channel(TARGET)
        old = channel.unary_unary("/old.Svc/Unary")
        for i in range(3):  # the rewritten multicallable is cached and reused
            assert old(f"p{i}".encode(), timeout=5) == f"{port}:p{i}".encode()
        assert RECEIVED[port][-3:] == [b"p0", b"p1", b"p2"]
        reply, _call = channel.unary_unary("/legacy.Echo/Unary").with_call(b"r", timeout=5)
        assert port_of(reply) == port and reply.endswith(b":r")
        streamed = list(channel.unary_stream("/old.Svc/ServerStream")(b"s", timeout=5))
        assert [r.split(b":", 1)[1] for r in streamed] == [b"s0", b"s1", b"s2"]
        assert list(channel.unary_stream(SERVER_STREAM)(b"t", timeout=5))
        channel.close()


async def test_aio_calls_use_the_rewritten_method(feed: FakeXds) -> None:
    with echo_grpc_servers(1) as (port,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, TARGET, ROUTES, {"main": [port]})
            channel = mesh.aio_grpc_channel(TARGET)
            await channel.channel_ready()
            old = channel.unary_unary("/old.Svc/Unary")
            for i in range(3):
                assert await old(f"a{i}".encode(), timeout=5) == f"{port}:a{i}".encode()
            reply = await channel.unary_unary("/legacy.Echo/Unary")(b"r", timeout=5)
            assert reply == f"{port}:r".encode()
            replies = [r async for r in channel.unary_stream("/old.Svc/ServerStream")(b"s")]
            assert [r.split(b":", 1)[1] for r in replies] == [b"s0", b"s1", b"s2"]
            await channel.close()
