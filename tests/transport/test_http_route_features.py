"""L7 route features through MeshTransport / AsyncMeshTransport, real servers on loopback."""

from __future__ import annotations

import json
from collections import Counter

import httpx

import meshlib
from meshlib.xds_client.resources import (
    ClusterWeight,
    DirectResponseAction,
    HeaderMutations,
    HeaderValueOption,
    PathMatchKind,
    RedirectAction,
    Route,
    RouteAction,
    RouteMatch,
)
from tests.routing.fake_xds import FakeXds
from tests.transport.http_servers import echo_servers
from tests.transport.route_setup import serve_routes

TARGET = "web:8080"

REWRITE_ROUTE = Route(
    "api",
    RouteMatch(PathMatchKind.PREFIX, "/api/"),
    RouteAction(cluster="main", prefix_rewrite="/v2/", host_rewrite="api.internal"),
    headers=HeaderMutations(
        request_headers_to_add=(HeaderValueOption("x-added", "yes"),),
        request_headers_to_remove=("x-secret",),
        response_headers_to_add=(HeaderValueOption("x-resp", "added"),),
        response_headers_to_remove=("x-upstream",),
    ),
)
LOCAL_ROUTES = [
    Route(
        "moved",
        RouteMatch(PathMatchKind.PREFIX, "/old"),
        None,
        redirect=RedirectAction(path_redirect="/new", response_code=302),
    ),
    Route(
        "tea",
        RouteMatch(PathMatchKind.PREFIX, "/tea"),
        None,
        direct_response=DirectResponseAction(418, b"short and stout"),
        headers=HeaderMutations(response_headers_to_add=(HeaderValueOption("x-local", "1"),)),
    ),
    Route("rest", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main")),
]


def seen_headers(reply: dict[str, object]) -> dict[str, str]:
    pairs = reply["headers"]
    assert isinstance(pairs, list)
    return {k: v for k, v in pairs}


def check_rewritten(reply: httpx.Response, request: httpx.Request) -> None:
    body = reply.json()
    assert body["path"] == "/v2/items?x=1"
    assert body["host"] == "api.internal"
    headers = seen_headers(body)
    assert headers["x-added"] == "yes" and "x-secret" not in headers
    assert reply.headers["x-resp"] == "added" and "x-upstream" not in reply.headers
    # The caller's request object is untouched.
    assert request.headers["x-secret"] == "s" and "x-added" not in request.headers
    assert str(request.url) == f"http://{TARGET}/api/items?x=1"


def test_rewrites_and_header_mutations(feed: FakeXds) -> None:
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, [REWRITE_ROUTE], {"main": [servers[0].port]})
        with mesh.http_client() as http:
            request = http.build_request(
                "GET", f"http://{TARGET}/api/items?x=1", headers={"x-secret": "s"}
            )
            check_rewritten(http.send(request), request)


async def test_async_rewrites_and_header_mutations(feed: FakeXds) -> None:
    with echo_servers(1) as servers:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, TARGET, [REWRITE_ROUTE], {"main": [servers[0].port]})
            async with mesh.async_http_client() as http:
                request = http.build_request(
                    "GET", f"http://{TARGET}/api/items?x=1", headers={"x-secret": "s"}
                )
                check_rewritten(await http.send(request), request)


def test_redirects_and_direct_responses(feed: FakeXds) -> None:
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, LOCAL_ROUTES, {"main": [servers[0].port]})
        with mesh.http_client() as http:
            moved = http.get(f"http://{TARGET}/old?q=1")
            assert moved.status_code == 302
            assert moved.headers["location"] == f"http://{TARGET}/new?q=1"
            followed = http.get(f"http://{TARGET}/old?q=1", follow_redirects=True)
            assert followed.status_code == 200 and followed.json()["path"] == "/new?q=1"
            tea = http.get(f"http://{TARGET}/tea")
            assert (tea.status_code, tea.content) == (418, b"short and stout")
            assert tea.headers["x-local"] == "1"
        assert [s["path"] for s in servers[0].seen] == ["/new?q=1"]


async def test_async_redirects_and_direct_responses(feed: FakeXds) -> None:
    with echo_servers(1) as servers:
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            serve_routes(feed, TARGET, LOCAL_ROUTES, {"main": [servers[0].port]})
            async with mesh.async_http_client(follow_redirects=True) as http:
                followed = await http.get(f"http://{TARGET}/old")
                assert followed.json()["path"] == "/new"
                assert [r.status_code for r in followed.history] == [302]
                tea = await http.get(f"http://{TARGET}/tea")
                assert (tea.status_code, tea.text) == (418, "short and stout")


def test_weighted_clusters_split_traffic(feed: FakeXds) -> None:
    split = Route(
        "split",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        RouteAction(weighted_clusters=(ClusterWeight("v1", 25), ClusterWeight("v2", 75))),
    )
    n, p = 200, 0.25
    with echo_servers(2) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, [split], {"v1": [servers[0].port], "v2": [servers[1].port]})
        with mesh.http_client() as http:
            ports = Counter(http.get(f"http://{TARGET}/").json()["port"] for _ in range(n))
    assert abs(ports[servers[0].port] - n * p) <= 5 * (n * p * (1 - p)) ** 0.5, ports
    assert ports[servers[0].port] + ports[servers[1].port] == n


def test_virtual_host_headers_apply(feed: FakeXds) -> None:
    vhost = HeaderMutations(request_headers_to_add=(HeaderValueOption("x-vh", "on"),))
    route = Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="main"))
    with echo_servers(1) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve_routes(feed, TARGET, [route], {"main": [servers[0].port]}, headers=vhost)
        with mesh.http_client() as http:
            reply = http.get(f"http://{TARGET}/", headers={"x-vh": "client"})
    values = [v for k, v in json.loads(reply.text)["headers"] if k == "x-vh"]
    assert values == ["client", "on"]  # append_if_exists_or_add: a second value
