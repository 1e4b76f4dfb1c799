"""L7 route features through MeshChannel / AioMeshChannel, real gRPC servers on loopback."""

from __future__ import annotations

import json
import socket
from collections import Counter

import grpc
import pytest

import meshlib
from meshlib.balancing.picker import Outcome
from meshlib.xds_client.resources import (
    ClusterWeight,
    DirectResponseAction,
    HeaderMatcher,
    HeaderMatchKind,
    HeaderMutations,
    HeaderValueOption,
    PathMatchKind,
    RedirectAction,
    RequestMirrorPolicy,
    Route,
    RouteAction,
    RouteMatch,
)
from tests.routing.fake_xds import FakeXds
from tests.transport.grpc_servers import METADATA, RECEIVED, UNARY, echo_grpc_servers, port_of
from tests.transport.polling import eventually, eventually_async
from tests.transport.recording import Recorder
from tests.transport.route_setup import serve_routes

TARGET = "echo:50051"

BETA = HeaderMatcher("x-group", HeaderMatchKind.EXACT, "beta")
ROUTES = [
    Route(
        "beta",
        RouteMatch(PathMatchKind.PREFIX, "/", headers=(BETA,)),
        RouteAction(cluster="beta"),
        headers=HeaderMutations(
            request_headers_to_add=(HeaderValueOption("x-added", "yes"),),
            request_headers_to_remove=("x-secret",),
        ),
    ),
    Route(
        "moved",
        RouteMatch(PathMatchKind.PATH, "/test.Echo/Moved"),
        None,
        redirect=RedirectAction(host="elsewhere"),
    ),
    Route(
        "canned",
        RouteMatch(PathMatchKind.PATH, "/test.Echo/Canned"),
        None,
        direct_response=DirectResponseAction(200, b"hi"),
    ),
    Route("main", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main")),
]


def metadata_of(reply: bytes) -> dict[str, str]:
    return {k: v for k, v in json.loads(reply.split(b":", 1)[1])}


def test_header_routing_and_metadata_mutations(feed: FakeXds) -> None:
    with echo_grpc_servers(2) as (main, beta), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, ROUTES, {"main": [main], "beta": [beta]})
        channel = mesh.grpc_channel(TARGET)
        call = channel.unary_unary(METADATA)
        sent = (("x-group", "beta"), ("x-secret", "s"))
        reply = call(b"", metadata=sent, timeout=5)
        assert port_of(reply) == beta
        seen = metadata_of(reply)
        assert seen["x-added"] == "yes" and "x-secret" not in seen
        assert port_of(call(b"", metadata=(("x-group", "alpha"),), timeout=5)) == main
        for method in ("/test.Echo/Moved", "/test.Echo/Canned"):
            with pytest.raises(grpc.RpcError) as failed:
                channel.unary_unary(method)(b"", timeout=5)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert "cannot follow it" in failed.value.details()  # type: ignore[attr-defined]
        channel.close()


async def test_aio_header_routing_and_metadata_mutations(feed: FakeXds) -> None:
    with echo_grpc_servers(2) as (main, beta):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, TARGET, ROUTES, {"main": [main], "beta": [beta]})
            channel = mesh.aio_grpc_channel(TARGET)
            await channel.channel_ready()
            call = channel.unary_unary(METADATA)
            reply = await call(b"", metadata=(("x-group", "beta"), ("x-secret", "s")), timeout=5)
            assert port_of(reply) == beta
            seen = metadata_of(reply)
            assert seen["x-added"] == "yes" and "x-secret" not in seen
            assert port_of(await call(b"", timeout=5)) == main
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary("/test.Echo/Canned")(b"", timeout=5)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "answers directly" in (failed.value.details() or "")


def test_weighted_clusters_and_unary_mirror(feed: FakeXds) -> None:
    route = Route(
        "split",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        RouteAction(
            weighted_clusters=(ClusterWeight("a", 50), ClusterWeight("b", 50)),
            request_mirror_policies=(RequestMirrorPolicy("shadow"),),
        ),
    )
    with echo_grpc_servers(3) as (a, b, shadow), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, [route], {"a": [a], "b": [b], "shadow": [shadow]})
        channel = mesh.grpc_channel(TARGET)
        unary = channel.unary_unary(UNARY)
        n = 40
        hits = Counter(port_of(unary(f"m{i}".encode(), timeout=5)) for i in range(n))
        assert set(hits) == {a, b}
        eventually(lambda: len(RECEIVED.get(shadow, [])) == n)
        assert sorted(RECEIVED[shadow]) == sorted(f"m{i}".encode() for i in range(n))
        eventually(lambda: channel.mirror_stats().as_dict()["sent"] == n)
        channel.close()


async def test_aio_unary_mirror(feed: FakeXds) -> None:
    route = Route(
        "m",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        RouteAction(cluster="main", request_mirror_policies=(RequestMirrorPolicy("shadow"),)),
    )
    with echo_grpc_servers(2) as (main, shadow):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, TARGET, [route], {"main": [main], "shadow": [shadow]})
            channel = mesh.aio_grpc_channel(TARGET)
            await channel.channel_ready()
            reply = await channel.unary_unary(UNARY)(b"copy-me", timeout=5)
            assert port_of(reply) == main
            await eventually_async(lambda: RECEIVED.get(shadow) == [b"copy-me"])
            stats = channel.mirror_stats()
            await eventually_async(lambda: stats.as_dict()["sent"] == 1)
            await channel.close()


def test_every_call_is_reported_with_its_outcome(feed: FakeXds, recorder: Recorder) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    route = Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main"))
    with echo_grpc_servers(1) as (port,), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, [route], {"main": [port]})
        channel = mesh.grpc_channel(TARGET)
        unary = channel.unary_unary(UNARY)
        unary(b"ok", timeout=5)
        with pytest.raises(grpc.RpcError):
            unary(b"fail", timeout=5)  # INVALID_ARGUMENT: the server is fine
        serve_routes(feed, TARGET, [route], {"main": [dead]})
        feed.flush()
        with pytest.raises(grpc.RpcError):
            unary(b"x", timeout=5)
        channel.close()
    here, gone = f"127.0.0.1:{port}", f"127.0.0.1:{dead}"
    assert recorder.finished == [
        (here, Outcome.SUCCESS),
        (here, Outcome.SUCCESS),
        (gone, Outcome.LOCAL_ORIGIN_FAILURE),
    ]
