"""The cluster's connection-pool settings on the endpoint clients (httpx and gRPC)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace

import grpc
import httpx
import pytest

import meshlib
from meshlib.routing.connection_pool import DEFAULT_POOL_SETTINGS, pool_settings
from meshlib.transport.grpc_routing import GrpcRouting
from meshlib.transport.pool_settings import (
    capped_connect,
    grpc_pool_options,
    has_h2,
    httpx_pool_options,
    shared_default_tls,
)
from meshlib.xds_client.resources import (
    ClusterResource,
    HttpProtocolOptions,
    PathMatchKind,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    UpstreamProtocol,
    VirtualHost,
)
from tests.routing.builders import eds_cluster, endpoints, listener
from tests.routing.fake_xds import FakeXds
from tests.transport.grpc_servers import UNARY, echo_grpc_servers
from tests.transport.http_servers import echo_servers
from tests.transport.polling import eventually, eventually_async

TARGET = "web:8080"


def cluster(**fields: object) -> ClusterResource:
    return replace(eds_cluster("web"), **fields)  # type: ignore[arg-type]


def serve(feed: FakeXds, resource: ClusterResource, ports: list[int]) -> None:
    """LDS → RDS (one catch-all route) → ``resource`` with loopback ``ports``."""
    route = Route("all", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="web"))
    config = RouteConfigResource("web-routes", (VirtualHost("vh", (TARGET,), (route,)),))
    feed.set("cds", "web", resource)
    feed.set("eds", "web", endpoints("web", [("127.0.0.1", p) for p in ports]))
    feed.set("rds", config.name, config)
    feed.set("lds", TARGET, listener(TARGET, config.name))


@contextmanager
def unaccepting_port() -> Iterator[int]:
    """A port whose listen backlog is full: a new connect hangs (SYN dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_settings_are_interned_and_list_what_is_not_applied() -> None:
    options = HttpProtocolOptions(
        idle_timeout_s=2.0, max_requests_per_connection=10, max_connection_duration_s=60.0
    )
    first = pool_settings(cluster(connect_timeout_s=0.5, http_protocol_options=options))
    again = pool_settings(cluster(connect_timeout_s=0.5, http_protocol_options=options))
    assert first is again
    assert (first.connect_timeout_s, first.idle_timeout_s, first.http2) == (0.5, 2.0, False)
    assert first.not_applied == ("max_connection_duration", "max_requests_per_connection")
    assert pool_settings(cluster(connect_timeout_s=0.6)) is not first


def test_connect_timeout_caps_only_the_connect_phase() -> None:
    request = httpx.Request("GET", "http://x/")
    caller = {"timeout": {"connect": 5.0, "read": 7.0, "write": 7.0, "pool": 7.0}}
    request.extensions = caller
    capped_connect(request, 0.25)
    assert request.extensions["timeout"] == {
        "connect": 0.25,
        "read": 7.0,
        "write": 7.0,
        "pool": 7.0,
    }
    assert caller["timeout"]["connect"] == 5.0  # the caller's dict is not touched
    shorter = httpx.Request("GET", "http://x/", extensions={"timeout": {"connect": 0.1}})
    capped_connect(shorter, 0.25)
    assert shorter.extensions["timeout"]["connect"] == 0.1  # the caller's shorter one wins


def test_httpx_connect_timeout_comes_from_the_cluster(feed: FakeXds) -> None:
    with unaccepting_port() as port, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, cluster(connect_timeout_s=0.3), [port])
        with mesh.http_client(timeout=10.0) as http:
            started = time.monotonic()
            answer = http.get(f"http://{TARGET}/")
            assert time.monotonic() - started < 3.0
        assert_connect_timeout_answer(answer)


async def test_async_httpx_connect_timeout_comes_from_the_cluster(feed: FakeXds) -> None:
    with unaccepting_port() as port:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, cluster(connect_timeout_s=0.3), [port])
            async with mesh.async_http_client(timeout=10.0) as http:
                started = time.monotonic()
                answer = await http.get(f"http://{TARGET}/")
                assert time.monotonic() - started < 3.0
            assert_connect_timeout_answer(answer)


def assert_connect_timeout_answer(answer: httpx.Response) -> None:
    """Envoy's answer to a connect timeout, the httpx error kept with it."""
    assert answer.status_code == 503
    assert answer.text.endswith("reset reason: connection timeout")
    assert isinstance(answer.extensions["meshlib.error"], httpx.ConnectTimeout)


def test_httpx_idle_timeout_expires_pooled_connections(feed: FakeXds) -> None:
    idle = HttpProtocolOptions(idle_timeout_s=0.2)
    with echo_servers(1) as (server,), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, cluster(http_protocol_options=idle), [server.port])
        with mesh.http_client() as http:
            http.get(f"http://{TARGET}/")
            http.get(f"http://{TARGET}/")
            assert server.accepted == 1  # kept alive between close calls
            time.sleep(0.4)  # longer than the idle timeout: the point of the test
            http.get(f"http://{TARGET}/")
            assert server.accepted == 2
    assert httpx_pool_options({}, DEFAULT_POOL_SETTINGS) == shared_default_tls({})


async def test_async_httpx_idle_timeout_expires_pooled_connections(feed: FakeXds) -> None:
    idle = HttpProtocolOptions(idle_timeout_s=0.2)
    with echo_servers(1) as (server,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, cluster(http_protocol_options=idle), [server.port])
            async with mesh.async_http_client() as http:
                await http.get(f"http://{TARGET}/")
                await http.get(f"http://{TARGET}/")
                assert server.accepted == 1
                await asyncio.sleep(0.4)  # longer than the idle timeout: the point of the test
                await http.get(f"http://{TARGET}/")
                assert server.accepted == 2


def test_changed_settings_open_a_new_client_and_drain_the_old(feed: FakeXds) -> None:
    with echo_servers(1) as (server,), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, cluster(), [server.port])
        with mesh.http_client() as http:
            http.get(f"http://{TARGET}/")
            feed.set(
                "cds",
                "web",
                cluster(http_protocol_options=HttpProtocolOptions(idle_timeout_s=10.0)),
            )
            feed.flush()
            eventually(lambda: http.get(f"http://{TARGET}/") is not None and server.accepted == 2)
            eventually(lambda: server.open_connections == 1)  # the old client closed


def test_unappliable_settings_are_logged_once_per_cluster(
    feed: FakeXds, caplog: pytest.LogCaptureFixture
) -> None:
    options = HttpProtocolOptions(
        upstream_protocol=UpstreamProtocol.HTTP2, max_requests_per_connection=100
    )
    resource = replace(eds_cluster("web"), name="web", http_protocol_options=options)
    with (
        echo_servers(1) as (server,),
        meshlib.Mesh.with_xds_client(feed) as mesh,
        caplog.at_level(logging.DEBUG, logger="meshlib"),
    ):
        serve(feed, resource, [server.port])
        with mesh.http_client() as http:
            for _ in range(3):
                assert http.get(f"http://{TARGET}/").status_code == 200
    skipped = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("cluster_setting_not_applied ")
    ]
    settings = sorted(re.search(r"setting='([^']+)'", m).group(1) for m in skipped)  # type: ignore[union-attr]
    expected = ["max_requests_per_connection"] + ([] if has_h2() else ["upstream_protocol"])
    assert settings == sorted(expected)
    assert all("cluster='web'" in m and "client='httpx'" in m for m in skipped)


def test_grpc_sub_channel_options_carry_the_cluster_settings(feed: FakeXds) -> None:
    idle = HttpProtocolOptions(idle_timeout_s=2.5)
    settings = pool_settings(cluster(connect_timeout_s=0.75, http_protocol_options=idle))
    assert grpc_pool_options(settings) == [
        ("grpc.min_reconnect_backoff_ms", 750),
        ("grpc.client_idle_timeout_ms", 2500),
    ]
    never = pool_settings(cluster(http_protocol_options=HttpProtocolOptions(idle_timeout_s=0)))
    assert ("grpc.client_idle_timeout_ms", 2**31 - 1) in grpc_pool_options(never)
    with meshlib.Mesh.with_xds_client(feed) as mesh:
        routing = GrpcRouting(mesh.directory, mesh.ready_timeout_s, "echo:50051")
        user = [("grpc.client_idle_timeout_ms", 1), ("grpc.max_receive_message_length", 9)]
        merged = dict(routing.sub_channel_options(user, None, settings))
    assert merged["grpc.client_idle_timeout_ms"] == 2500  # the cluster's setting wins
    assert merged["grpc.max_receive_message_length"] == 9
    assert merged["grpc.default_authority"] == "echo:50051"


async def test_grpc_idle_timeout_option_idles_the_channel() -> None:
    idle = HttpProtocolOptions(idle_timeout_s=1.0)  # grpc-core's floor
    options = grpc_pool_options(pool_settings(cluster(http_protocol_options=idle)))
    with echo_grpc_servers(1) as (port,):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        await channel.unary_unary(UNARY, None, None)(b"x", timeout=5)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        await eventually_async(
            lambda: channel.get_state() is grpc.ChannelConnectivity.IDLE, timeout=5.0
        )
        await channel.close(None)
