"""A shadow is one try of the mirror cluster's call plan, made by the plan's adapter as
any try is: bounded by the route timeout, reported to the shadow cluster's load reporter
and recorded in the request metrics under the shadow cluster (Envoy counts a shadow in
its cluster's upstream stats); its answer is thrown away and never reaches the caller."""

from __future__ import annotations

from typing import Any

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
from tests.transport.grpc_servers import UNARY, echo_grpc_servers, port_of
from tests.transport.http_servers import echo_servers
from tests.transport.polling import eventually, eventually_async
from tests.transport.recording import Recorder
from tests.transport.route_setup import serve_routes

HTTP_TARGET = "shop:8080"
GRPC_TARGET = "ledger:50051"


class Spy:
    """Stands in for a transport's client metrics: active, remembers every record."""

    active = True

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record_http(self, elapsed: float, **labels: Any) -> None:
        self.records.append(labels)

    def record_rpc(self, elapsed: float, **labels: Any) -> None:
        self.records.append(labels)

    def of(self, cluster: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["cluster"] == cluster]


def mirrored() -> Route:
    action = RouteAction(cluster="main", request_mirror_policies=(RequestMirrorPolicy("shadow"),))
    return Route("m", RouteMatch(PathMatchKind.PREFIX, "/"), action)


def reported(recorder: Recorder, port: int) -> list[Outcome]:
    with recorder.lock:
        return [outcome for ep, outcome in recorder.finished if ep == f"127.0.0.1:{port}"]


def test_http_shadow_is_a_try_reported_for_the_shadow_cluster(
    feed: FakeXds, recorder: Recorder
) -> None:
    with echo_servers(2) as (main, shadow), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(
            feed, HTTP_TARGET, [mirrored()], {"main": [main.port], "shadow": [shadow.port]}
        )
        transport = meshlib.MeshTransport(mesh)
        spy = Spy()
        transport._routing.metrics = spy  # type: ignore[assignment]
        with httpx.Client(transport=transport) as http:
            assert http.get(f"http://{HTTP_TARGET}/a").json()["port"] == main.port
            eventually(
                lambda: len(spy.of("shadow")) == 1 and len(reported(recorder, shadow.port)) == 1
            )
        (record,) = spy.of("shadow")
        assert record["endpoint"] == f"127.0.0.1:{shadow.port}"
        assert record["status_code"] == 200 and record["service"] == HTTP_TARGET
        assert reported(recorder, shadow.port) == [Outcome.SUCCESS]
        assert [r["endpoint"] for r in spy.of("main")] == [f"127.0.0.1:{main.port}"]
        # bounded like any try: the route timeout (15 s by default) travels as the deadline
        headers = dict(shadow.seen[0]["headers"])  # type: ignore[call-overload]
        assert 0 < int(headers["x-meshlib-deadline-ms"]) <= 15_000
        assert transport.mirror_stats().as_dict()["sent"] == 1


async def test_async_http_shadow_is_a_try_reported_for_the_shadow_cluster(
    feed: FakeXds, recorder: Recorder
) -> None:
    with echo_servers(2) as (main, shadow):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            clusters = {"main": [main.port], "shadow": [shadow.port]}
            serve_routes(feed, HTTP_TARGET, [mirrored()], clusters)
            transport = meshlib.AsyncMeshTransport(mesh)
            spy = Spy()
            transport._routing.metrics = spy  # type: ignore[assignment]
            async with httpx.AsyncClient(transport=transport) as http:
                reply = await http.get(f"http://{HTTP_TARGET}/a")
                assert reply.json()["port"] == main.port
                await eventually_async(
                    lambda: len(spy.of("shadow")) == 1 and len(reported(recorder, shadow.port)) == 1
                )
            (record,) = spy.of("shadow")
            assert record["endpoint"] == f"127.0.0.1:{shadow.port}"
            assert record["status_code"] == 200
            assert reported(recorder, shadow.port) == [Outcome.SUCCESS]
            headers = dict(shadow.seen[0]["headers"])  # type: ignore[call-overload]
            assert 0 < int(headers["x-meshlib-deadline-ms"]) <= 15_000


def test_grpc_shadow_is_a_try_reported_for_the_shadow_cluster(
    feed: FakeXds, recorder: Recorder
) -> None:
    with echo_grpc_servers(2) as (main, shadow), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, GRPC_TARGET, [mirrored()], {"main": [main], "shadow": [shadow]})
        channel = mesh.grpc_channel(GRPC_TARGET)
        spy = Spy()
        channel._core.routing.metrics = spy  # type: ignore[assignment]
        assert port_of(channel.unary_unary(UNARY)(b"x", timeout=5)) == main
        eventually(lambda: len(spy.of("shadow")) == 1 and len(reported(recorder, shadow)) == 1)
        (record,) = spy.of("shadow")
        assert record["endpoint"] == f"127.0.0.1:{shadow}" and record["status_code"] == 0
        assert record["full_method"] == UNARY
        assert reported(recorder, shadow) == [Outcome.SUCCESS]
        assert channel.mirror_stats().as_dict()["sent"] == 1
        channel.close()


async def test_aio_grpc_shadow_is_a_try_reported_for_the_shadow_cluster(
    feed: FakeXds, recorder: Recorder
) -> None:
    with echo_grpc_servers(2) as (main, shadow):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, GRPC_TARGET, [mirrored()], {"main": [main], "shadow": [shadow]})
            channel = mesh.aio_grpc_channel(GRPC_TARGET)
            spy = Spy()
            channel._core.routing.metrics = spy  # type: ignore[assignment]
            assert port_of(await channel.unary_unary(UNARY)(b"x", timeout=5)) == main
            await eventually_async(
                lambda: len(spy.of("shadow")) == 1 and len(reported(recorder, shadow)) == 1
            )
            (record,) = spy.of("shadow")
            assert record["endpoint"] == f"127.0.0.1:{shadow}" and record["status_code"] == 0
            assert reported(recorder, shadow) == [Outcome.SUCCESS]
            await channel.close()
