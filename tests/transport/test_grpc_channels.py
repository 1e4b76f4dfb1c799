"""MeshChannel / AioMeshChannel against real gRPC servers: every call kind, every endpoint."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import meshlib
from meshlib.observability import metrics as mesh_metrics
from meshlib.xds_client.resources import HealthStatus
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.grpc_servers import (
    BIDI,
    CLIENT_STREAM,
    SERVER_STREAM,
    UNARY,
    echo_grpc_servers,
    port_of,
)
from tests.transport.polling import eventually, eventually_async

TARGET = "echo:50051"


def serve(feed: FakeXds, ports: list[int]) -> None:
    feed.set_service(TARGET, {"echo": endpoints("echo", [("127.0.0.1", p) for p in ports])})


def test_sync_channel_all_call_kinds_round_robin(feed: FakeXds) -> None:
    with echo_grpc_servers(3) as ports, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, ports)
        channel = mesh.grpc_channel(f"xds:///{TARGET}")
        unary = channel.unary_unary(UNARY)
        replies = [unary(b"hi", timeout=5) for _ in range(6)]
        assert Counter(port_of(r) for r in replies) == {p: 2 for p in ports}
        assert replies[0].endswith(b":hi")

        response, call = unary.with_call(b"w", timeout=5)
        assert call.code() is grpc.StatusCode.OK and response.endswith(b":w")
        assert unary.future(b"f", timeout=5).result().endswith(b":f")

        streamed = list(channel.unary_stream(SERVER_STREAM)(b"s", timeout=5))
        assert [r.split(b":")[1] for r in streamed] == [b"s0", b"s1", b"s2"]
        assert len({port_of(r) for r in streamed}) == 1

        joined = channel.stream_unary(CLIENT_STREAM)(iter([b"a", b"b"]), timeout=5)
        assert joined.endswith(b":a+b")

        bidi = list(channel.stream_stream(BIDI)(iter([b"x", b"y"]), timeout=5))
        assert [r.split(b":")[1] for r in bidi] == [b"x", b"y"]

        with pytest.raises(grpc.RpcError) as failed:
            unary(b"fail", timeout=5)
        assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(channel.endpoint_channels()) == sorted(f"127.0.0.1:{p}" for p in ports)


def test_sync_channel_routing_failures_are_unavailable(feed: FakeXds) -> None:
    feed.remove("lds", "missing:1")
    down = endpoints("echo", [("127.0.0.1", 9)], health=HealthStatus.UNHEALTHY)
    feed.set_service(TARGET, {"echo": down})
    with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=5) as mesh:
        for target, text in (
            (TARGET, "no usable endpoint"),
            ("missing:1", "missing:1 is not available"),
            ("silent:1", "silent:1 is not available"),  # outside the mesh: fails at once
        ):
            started = time.monotonic()
            with mesh.grpc_channel(target) as channel, pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(UNARY)(b"x", timeout=5)
            assert time.monotonic() - started < 1
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert text in (info.value.details() or "")
            assert isinstance(info.value, meshlib.RoutingError)


def test_sync_channel_without_xds_answer_is_unavailable_after_the_timeout() -> None:
    feed = FakeXds(hold_wildcard=True)
    try:
        with (
            meshlib.Mesh.with_xds_client(feed, ready_timeout_s=0.1) as mesh,
            mesh.grpc_channel("silent:1") as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            channel.unary_unary(UNARY)(b"x", timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "no xDS config after" in (info.value.details() or "")
    finally:
        feed.close()


def test_sync_channel_closes_sub_channel_of_removed_endpoint(feed: FakeXds) -> None:
    with echo_grpc_servers(2) as ports, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, ports)
        channel = mesh.grpc_channel(TARGET)
        unary = channel.unary_unary(UNARY)
        assert {port_of(unary(b"x", timeout=5)) for _ in range(4)} == set(ports)
        serve(feed, ports[:1])
        eventually(lambda: channel.endpoint_channels() == [f"127.0.0.1:{ports[0]}"])
        assert {port_of(unary(b"x", timeout=5)) for _ in range(3)} == {ports[0]}


def test_sync_channel_subscribe_reports_ready(feed: FakeXds) -> None:
    with echo_grpc_servers(1) as ports, meshlib.Mesh.with_xds_client(feed) as mesh:
        channel = mesh.grpc_channel(TARGET)
        serve(feed, ports)
        grpc.channel_ready_future(channel).result(timeout=5)
        channel.close()


async def _requests(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_aio_channel_all_call_kinds_round_robin() -> None:
    # The service list is held back until the service exists, so the early call
    # waits for config instead of racing a "does not exist" answer.
    feed = FakeXds(hold_wildcard=True)
    try:
        with echo_grpc_servers(3) as ports:
            async with meshlib.Mesh.with_xds_client(feed) as mesh:
                channel = mesh.aio_grpc_channel(f"xds:///{TARGET}")
                unary = channel.unary_unary(UNARY)
                early = unary(b"early", timeout=5)  # before any config: a deferred call
                serve(feed, ports)
                feed.release_wildcard()
                assert (await early).endswith(b":early")
                replies = [await unary(b"hi", timeout=5) for _ in range(6)]
                assert Counter(port_of(r) for r in replies) == {p: 2 for p in ports}

                streamed = [r async for r in channel.unary_stream(SERVER_STREAM)(b"s", timeout=5)]
                assert [r.split(b":")[1] for r in streamed] == [b"s0", b"s1", b"s2"]

                joined = await channel.stream_unary(CLIENT_STREAM)(_requests(b"a", b"b"), timeout=5)
                assert joined.endswith(b":a+b")

                bidi_call = channel.stream_stream(BIDI)(timeout=5)
                await bidi_call.write(b"x")
                first = await bidi_call.read()
                await bidi_call.done_writing()
                assert first.endswith(b":x")
                assert await bidi_call.code() is grpc.StatusCode.OK

                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await unary(b"fail", timeout=5)
                assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                await channel.channel_ready()
                assert channel.get_state() is grpc.ChannelConnectivity.READY
    finally:
        feed.close()


async def test_aio_channel_routing_failure_is_unavailable(feed: FakeXds) -> None:
    down = endpoints("echo", [("127.0.0.1", 9)], health=HealthStatus.UNHEALTHY)
    feed.set_service(TARGET, {"echo": down})
    async with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=0.1) as mesh:
        channel = mesh.aio_grpc_channel(TARGET)
        call = channel.unary_unary(UNARY)(b"x")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "no usable endpoint" in (info.value.details() or "")
        assert await call.code() is grpc.StatusCode.UNAVAILABLE


async def test_aio_channel_closes_sub_channel_of_removed_endpoint(feed: FakeXds) -> None:
    with echo_grpc_servers(2) as ports:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, ports)
            channel = mesh.aio_grpc_channel(TARGET)
            unary = channel.unary_unary(UNARY)
            assert {port_of(await unary(b"x", timeout=5)) for _ in range(4)} == set(ports)
            serve(feed, ports[:1])
            await eventually_async(lambda: len(channel.endpoint_channels()) == 1)
            assert channel.endpoint_channels() == [f"127.0.0.1:{ports[0]}"]
            assert {port_of(await unary(b"x", timeout=5)) for _ in range(3)} == {ports[0]}


async def test_calls_are_measured(feed: FakeXds, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(mesh_metrics, "_default", mesh_metrics.ClientMetrics(provider))
    with echo_grpc_servers(1) as ports:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, ports)
            sync_channel = mesh.grpc_channel(TARGET)
            sync_channel.unary_unary(UNARY)(b"x", timeout=5)
            aio_channel = mesh.aio_grpc_channel(TARGET)
            await mesh.wait_ready_async(TARGET)
            with pytest.raises(grpc.aio.AioRpcError):
                await aio_channel.unary_unary(UNARY)(b"fail", timeout=5)
            await asyncio.sleep(0)  # let grpc run the done callbacks
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    points = [
        dict(point.attributes or {})
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "rpc.client.call.duration"
        for point in metric.data.data_points
    ]
    common = {
        "rpc.system": "grpc",
        "rpc.service": "test.Echo",
        "rpc.method": "Unary",
        "server.address": "echo",
        "server.port": 50051,
        "mesh.service": TARGET,
        "mesh.cluster": "echo",
        "mesh.endpoint": f"127.0.0.1:{ports[0]}",
    }
    ok = {**common, "rpc.grpc.status_code": 0, "mesh.outcome": "success"}
    failed = {
        **common,
        "rpc.grpc.status_code": 3,
        "mesh.outcome": "failure",
        "error.type": "INVALID_ARGUMENT",
    }
    assert sorted(points, key=str) == sorted([ok, failed], key=str)
