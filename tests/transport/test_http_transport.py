"""MeshTransport / AsyncMeshTransport against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

import meshlib
from meshlib.observability import metrics as mesh_metrics
from meshlib.xds_client.resources import HealthStatus
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.http_servers import EchoServer, echo_servers
from tests.transport.polling import eventually, eventually_async

TARGET = "web:8080"


def serve(feed: FakeXds, servers: list[EchoServer], target: str = TARGET) -> None:
    feed.set_service(target, {"web": endpoints("web", [("127.0.0.1", s.port) for s in servers])})


def test_sync_client_reaches_every_endpoint_round_robin(feed: FakeXds) -> None:
    with echo_servers(3) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, servers)
        with mesh.http_client() as http:
            replies = [http.get(f"http://{TARGET}/items/{i}").json() for i in range(9)]
        assert Counter(r["port"] for r in replies) == {s.port: 3 for s in servers}
        assert {r["host"] for r in replies} == {TARGET}
        assert replies[4]["path"] == "/items/4"


async def test_async_client_reaches_every_endpoint_round_robin(feed: FakeXds) -> None:
    with echo_servers(3) as servers:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, servers)
            async with mesh.async_http_client() as http:
                replies = [(await http.get(f"http://{TARGET}/a?b=1")).json() for _ in range(9)]
                together = await asyncio.gather(*(http.get(f"http://{TARGET}/") for _ in range(6)))
            assert Counter(r["port"] for r in replies) == {s.port: 3 for s in servers}
            assert {r["host"] for r in replies} == {TARGET}
            assert all(r.status_code == 200 for r in together)


def test_port_80_is_the_default(feed: FakeXds) -> None:
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, servers, "plain:80")
        with mesh.http_client() as http:
            assert http.get("http://plain/x").json()["host"] == "plain"


def test_non_mesh_hosts_pass_through(feed: FakeXds) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(204)

    feed.remove("lds", "outside:80")
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        # An IP literal never touches the mesh: a real server answers directly.
        with mesh.http_client() as http:
            assert (
                http.get(f"http://127.0.0.1:{servers[0].port}/").json()["port"] == servers[0].port
            )
        with mesh.http_client(
            transport=httpx.MockTransport(handler), passthrough_hosts=["never-asked"]
        ) as http:
            assert http.get("http://outside/one").status_code == 204
            assert http.get("http://outside/two").status_code == 204
            assert http.get("http://never-asked:9/").status_code == 204
        assert seen == ["http://outside/one", "http://outside/two", "http://never-asked:9/"]
        feed.flush()
        assert feed.active("lds") == set()  # non-members start no watch
        assert feed.wildcard_active("lds")  # membership: one wildcard LDS watch


def test_endpoint_removal_closes_its_pool(feed: FakeXds) -> None:
    with echo_servers(2) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, servers)
        transport = meshlib.MeshTransport(mesh)
        with httpx.Client(transport=transport) as http:
            ports = {http.get(f"http://{TARGET}/").json()["port"] for _ in range(4)}
            assert ports == {s.port for s in servers}
            assert transport.endpoint_pools() == sorted(f"127.0.0.1:{s.port}" for s in servers)
            eventually(lambda: servers[1].open_connections == 1)

            serve(feed, servers[:1])
            eventually(lambda: transport.endpoint_pools() == [f"127.0.0.1:{servers[0].port}"])
            eventually(lambda: servers[1].open_connections == 0)
            assert {http.get(f"http://{TARGET}/").json()["port"] for _ in range(3)} == {
                servers[0].port
            }
            assert servers[0].open_connections == 1


def test_request_in_flight_on_a_removed_endpoint_completes(feed: FakeXds) -> None:
    """A removed endpoint's pool drains: the call already on it still gets its answer."""
    with echo_servers(2) as (old, new), meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, [old])
        transport = meshlib.MeshTransport(mesh)
        with httpx.Client(transport=transport, timeout=5) as http:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                slow = pool.submit(http.get, f"http://{TARGET}/sleep/0.5")
                eventually(lambda: old.open_connections == 1)
                serve(feed, [new])
                eventually(lambda: transport.endpoint_pools() == [])  # old is draining
                answer = slow.result(timeout=5)
            assert answer.status_code == 200
            assert answer.json()["port"] == old.port
            assert http.get(f"http://{TARGET}/").json()["port"] == new.port
            eventually(lambda: old.open_connections == 0)


async def test_async_endpoint_removal_closes_its_pool(feed: FakeXds) -> None:
    with echo_servers(2) as servers:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve(feed, servers)
            transport = meshlib.AsyncMeshTransport(mesh)
            async with httpx.AsyncClient(transport=transport) as http:
                for _ in range(2):
                    await http.get(f"http://{TARGET}/")
                assert len(transport.endpoint_pools()) == 2
                serve(feed, servers[:1])
                await eventually_async(lambda: servers[1].open_connections == 0)
                assert servers[1].open_connections == 0
                assert transport.endpoint_pools() == [f"127.0.0.1:{servers[0].port}"]


def test_routing_failures_are_answered_as_envoy_does(feed: FakeXds) -> None:
    down = endpoints("web", [("127.0.0.1", 9)], health=HealthStatus.UNHEALTHY)
    feed.set_service(TARGET, {"web": down}, domains=("web:8080",))
    feed.set_service("other:1", {"o": down}, domains=("nothing-matches",))
    with (
        meshlib.Mesh.with_xds_client(feed, ready_timeout_s=0.1) as mesh,
        mesh.http_client() as http,
    ):
        unhealthy = http.get(f"http://{TARGET}/")
        assert (unhealthy.status_code, unhealthy.text) == (503, "no healthy upstream")
        assert isinstance(unhealthy.extensions["meshlib.error"], meshlib.NoHealthyEndpointError)
        no_route = http.get("http://other:1/")
        assert (no_route.status_code, no_route.content) == (404, b"")
        assert isinstance(no_route.extensions["meshlib.error"], meshlib.NoRouteError)


def test_routing_errors_are_httpx_errors_too(feed: FakeXds) -> None:
    down = endpoints("web", [("127.0.0.1", 9)], health=HealthStatus.UNHEALTHY)
    feed.set_service(TARGET, {"web": down}, domains=("web:8080",))
    feed.set_service("other:1", {"o": down}, domains=("nothing-matches",))
    with (
        meshlib.Mesh.with_xds_client(feed, ready_timeout_s=0.1) as mesh,
        mesh.http_client(raise_mesh_errors=True) as http,
    ):
        with pytest.raises(meshlib.NoHealthyEndpointError, match="no usable endpoint") as info:
            http.get(f"http://{TARGET}/")
        assert isinstance(info.value, httpx.ConnectError)
        assert info.value.request.url.host == "web"
        with pytest.raises(httpx.RequestError, match="no virtual host") as no_route:
            http.get("http://other:1/")
        assert isinstance(no_route.value, meshlib.NoRouteError)


def test_unknown_service_list_is_not_ready_after_the_timeout() -> None:
    feed = FakeXds(hold_wildcard=True)
    try:
        with (
            meshlib.Mesh.with_xds_client(feed, ready_timeout_s=0.1) as mesh,
            mesh.http_client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as http,
            pytest.raises(meshlib.ServiceNotReadyError, match="service list") as not_ready,
        ):
            http.get("http://silent:1/")
        assert isinstance(not_ready.value, httpx.ConnectError)
    finally:
        feed.close()


async def test_membership_changes_take_effect_at_once(feed: FakeXds) -> None:
    def outside(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="direct")

    with echo_servers(1) as servers:
        async with (
            meshlib.Mesh.with_xds_client(feed, ready_timeout_s=5) as mesh,
            mesh.async_http_client(transport=httpx.MockTransport(outside)) as http,
        ):
            assert (await http.get(f"http://{TARGET}/")).text == "direct"
            serve(feed, servers)
            await eventually_async(lambda: mesh.directory.is_member(TARGET))
            assert (await http.get(f"http://{TARGET}/")).json()["port"] == servers[0].port
            feed.remove("lds", TARGET)
            await eventually_async(lambda: mesh.directory.known_non_member(TARGET))
            assert (await http.get(f"http://{TARGET}/")).text == "direct"


def test_requests_are_measured(feed: FakeXds, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(mesh_metrics, "_default", mesh_metrics.ClientMetrics(provider))
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, servers)
        with mesh.http_client() as http:
            http.get(f"http://{TARGET}/")
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    points = {
        metric.name: metric.data.data_points[0]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    duration = points["http.client.request.duration"]
    assert dict(duration.attributes or {}) == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "server.address": "web",
        "server.port": 8080,
        "mesh.service": TARGET,
        "mesh.cluster": "web",
        "mesh.endpoint": f"127.0.0.1:{servers[0].port}",
        "mesh.outcome": "success",
    }
    requests = points["meshlib.client.requests"]
    assert isinstance(requests, NumberDataPoint) and requests.value == 1
