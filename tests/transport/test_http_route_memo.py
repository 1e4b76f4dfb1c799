"""The route memo of the httpx transports (``RouteMemo``), sync and async.

A repeated request to the same URL and Host is routed from the memo (no target,
snapshot or plan lookup). Each test publishes a service on a FakeXds feed, calls
real cue-driven upstreams on loopback, warms the memo, changes something, and
checks that the very next request sees the change, as a first request would:
route and endpoint changes pushed through xDS, the service leaving the mesh,
a breaker registered late, other Host headers and query strings, more URLs
than the memo holds, and header-matched routes (never memoised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest

import meshlib
from meshlib.errors import CircuitOpenError
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport.http_route_memo import RouteMemo
from meshlib.xds_client import LISTENER
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import Upstream, http_upstreams
from tests.routing.builders import eds_cluster, endpoints, listener, prefix_route
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    PORT,
    cluster_of,
    isolated_breakers,
    publish,
)
from tests.transport.http_call_plan_setup import HTTP_KINDS, HttpCaller
from tests.transport.route_memo_setup import (
    DepartureHold,
    PassthroughCaller,
    memo_size,
    spy_on_routing,
)
from tests.transport.route_setup import serve_routes

PREFIX = xds.PathMatchKind.PREFIX
ALIAS = "alias.example"
ADDED = xds.HeaderMutations(
    request_headers_to_add=(xds.HeaderValueOption("x-added", "yes"),),
    response_headers_to_add=(xds.HeaderValueOption("x-resp", "added"),),
)
V2_ONLY = xds.HeaderMatcher("x-v", xds.HeaderMatchKind.EXACT, "2")


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return spy_on_routing(monkeypatch)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> BreakerRegistry:
    return isolated_breakers(monkeypatch)


def last_seen_by(upstream: Upstream) -> tuple[str, dict[str, str]]:
    """(path, headers) of the last request ``upstream`` received."""
    seen = upstream.cue.requests()[-1]
    return seen.path, seen.headers


async def warm(caller: HttpCaller, routed: list[str], url: str, answer: str) -> None:
    """Three requests to ``url`` answered ``answer``; only the first took the full routing."""
    assert [await caller.served_by(path=url) for _ in range(3)] == [answer] * 3
    assert routed == [url]
    assert memo_size(caller) == 1


# --- xDS changes ---------------------------------------------------------------------

CHANGES = ["other-upstream", "path-rewrite", "header-mutation", "header-route-added"]


def push_change(feed: FakeXds, change: str, host: str, a: Upstream, b: Upstream) -> None:
    other: dict[str, Sequence[int]] = {"other": [b.port]}
    to_other = xds.RouteAction(cluster="other")
    if change == "other-upstream":
        catch_all = xds.Route("to-other", xds.RouteMatch(PREFIX, "/"), to_other)
        publish(feed, host, [a.port], before=[catch_all], more_clusters=other)
    elif change == "path-rewrite":
        publish(feed, host, [a.port], action={"prefix_rewrite": "/v2/"})
    elif change == "header-mutation":
        publish(feed, host, [a.port], route_headers=ADDED)
    else:
        v2 = xds.Route("v2", xds.RouteMatch(PREFIX, "/", headers=(V2_ONLY,)), to_other)
        publish(feed, host, [a.port], before=[v2], more_clusters=other)
    feed.flush()


@pytest.mark.parametrize("change", CHANGES)
@HTTP_KINDS
async def test_route_change_is_honoured_by_the_next_request(
    kind: str, change: str, feed: FakeXds, routed: list[str]
) -> None:
    url = "/p?q=1"
    with http_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"change-{change}-{kind}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port]))
            try:
                await warm(caller, routed, url, "a 200")
                assert last_seen_by(a)[0] == url and "x-added" not in last_seen_by(a)[1]
                assert "x-resp" not in (await caller.request(path=url)).headers
                push_change(feed, change, host, a, b)
                for _ in range(2):  # the next request, and the one after (memoised again)
                    if change == "other-upstream":
                        assert await caller.served_by(path=url) == "b 200"
                    elif change == "path-rewrite":
                        assert await caller.served_by(path=url) == "a 200"
                        assert last_seen_by(a)[0] == "/v2/p?q=1"
                    elif change == "header-mutation":
                        response = await caller.request(path=url)
                        assert response.json()["served_by"] == "a"
                        assert response.headers.get("x-resp") == "added"
                        assert last_seen_by(a)[1]["x-added"] == "yes"
                    else:
                        asked = {"x-v": "2"}
                        assert await caller.served_by(path=url, headers=asked) == "b 200"
                        assert await caller.served_by(path=url) == "a 200"
            finally:
                await caller.close()


@HTTP_KINDS
async def test_endpoint_change_sends_the_next_request_to_the_new_endpoint(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    with http_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"eds-{kind}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port]))
            try:
                await warm(caller, routed, "/p", "a 200")
                cluster = cluster_of(host)
                feed.set("eds", cluster, endpoints(cluster, [("127.0.0.1", b.port)]))
                feed.flush()
                assert [await caller.served_by(path="/p") for _ in range(2)] == ["b 200"] * 2
                assert a.cue.count() == 3
            finally:
                await caller.close()


@HTTP_KINDS
async def test_service_leaving_the_mesh_passes_the_next_request_through_as_a_first_one(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    with http_upstreams(["a", "outside"]) as (a, outside):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"leave-{kind}"
            target = publish(feed, host, [a.port])
            caller = PassthroughCaller(kind, mesh, target, outside.port)
            newcomer = PassthroughCaller(kind, mesh, target, outside.port)
            try:
                await warm(caller, routed, "/p", "a 200")
                feed.remove("lds", target)
                feed.flush()
                after_memo = await caller.outcome(path="/p")
                first_ever = await newcomer.outcome(path="/p")  # no memo: the general path
                assert after_memo == first_ever == "outside 200"
                assert a.cue.count() == 3
                assert last_seen_by(outside)[1]["host"] == target  # the URL's own Host
                publish(feed, host, [a.port])  # back in the mesh: routed again at once
                feed.flush()
                assert await caller.served_by(path="/p") == "a 200"
                assert outside.cue.count() == 2
            finally:
                await caller.close()
                await newcomer.close()


@HTTP_KINDS
async def test_request_after_the_service_left_the_listener_set_is_passed_through(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    """Between the membership update and the service's own: the snapshot still stands,
    but the service is no longer in the mesh, so the memo must not route by it."""
    with http_upstreams(["a", "outside"]) as (a, outside):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"window-{kind}", [a.port])
            caller = PassthroughCaller(kind, mesh, target, outside.port)
            newcomer = PassthroughCaller(kind, mesh, target, outside.port)
            hold = DepartureHold(target)
            try:
                await warm(caller, routed, "/p", "a 200")  # the mesh's membership watch is first
                stop_watching = feed.watch_all(LISTENER, hold)
                feed.remove("lds", target)
                assert await asyncio.to_thread(hold.holding.wait, 5.0)
                assert not mesh.directory.known_member(target)
                assert type(mesh.directory.service(target).view) is ServiceSnapshot
                after_memo = await caller.outcome(path="/p")
                first_ever = await newcomer.outcome(path="/p")
                assert after_memo == first_ever == "outside 200"
                assert a.cue.count() == 3
                stop_watching()
            finally:
                hold.release()
                await caller.close()
                await newcomer.close()


# --- breakers registered later -------------------------------------------------------

BREAKER_CASES = [("service", "failing-upstream"), ("cluster", "failure-recorded")]


@pytest.mark.parametrize(("under", "opened_by"), BREAKER_CASES)
@HTTP_KINDS
async def test_breaker_registered_after_memoised_requests_applies_to_the_next_one(
    kind: str,
    under: str,
    opened_by: str,
    feed: FakeXds,
    routed: list[str],
    registry: BreakerRegistry,
) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"breaker-{under}-{kind}"
            target = publish(feed, host, [a.port])
            caller = HttpCaller(kind, mesh, target)
            try:
                await warm(caller, routed, "/p", "a 200")
                one_call = BreakerConfig(
                    minimum_number_of_calls=1,
                    sliding_window_size=1,
                    wait_duration_in_open_state_s=60.0,
                )
                breaker = registry.get(target if under == "service" else cluster_of(host), one_call)
                if opened_by == "failing-upstream":
                    a.cue.push("503")
                    assert await caller.served_by(path="/p") == "a 503"  # counted by it
                else:
                    breaker.on_failure(0.0)
                assert breaker.state is BreakerState.OPEN
                served = a.cue.count()
                error = await caller.raised(path="/p")
                assert isinstance(error, CircuitOpenError), repr(error)
                assert isinstance(error, httpx.ConnectError)
                assert a.cue.count() == served  # refused before it was sent
                assert breaker.rejected == 1
            finally:
                await caller.close()


# --- what tells requests apart --------------------------------------------------------


def publish_with_alias(feed: FakeXds, host: str, main_port: int, alias_port: int) -> str:
    """``host:PORT`` with two virtual hosts: its own names -> ``main``, ALIAS -> ``alias``."""
    target = f"{host}:{PORT}"
    main, alias = cluster_of(host), cluster_of(f"alias-{host}")
    config = xds.RouteConfigResource(
        f"{target}-routes",
        (
            xds.VirtualHost("main", (target, host), (prefix_route("/", main),)),
            xds.VirtualHost("alias", (ALIAS,), (prefix_route("/", alias),)),
        ),
    )
    feed.set("rds", config.name, config)
    for name, port in ((main, main_port), (alias, alias_port)):
        feed.set("cds", name, eds_cluster(name))
        feed.set("eds", name, endpoints(name, [("127.0.0.1", port)]))
    feed.set("lds", target, listener(target, config.name))
    return target


@HTTP_KINDS
async def test_another_host_header_on_the_same_url_is_routed_on_its_own(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    with http_upstreams(["main", "alias"]) as (main, alias):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"vhosts-{kind}"
            caller = HttpCaller(kind, mesh, publish_with_alias(feed, host, main.port, alias.port))
            try:
                answers = []
                for _ in range(3):
                    answers.append(await caller.served_by(path="/p"))
                    answers.append(await caller.served_by(path="/p", headers={"host": ALIAS}))
                assert answers == ["main 200", "alias 200"] * 3
                assert routed == ["/p", "/p"]  # one full routing per (URL, Host)
                assert last_seen_by(alias)[1]["host"] == ALIAS
                assert last_seen_by(main)[1]["host"] == f"{host}:{PORT}"
            finally:
                await caller.close()


@HTTP_KINDS
async def test_another_query_on_the_same_path_is_routed_on_its_own(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    urls = ["/p?x=1", "/p?x=2"] * 3
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"query-{kind}"
            action = {"prefix_rewrite": "/v2/"}  # the plan carries the outgoing path and query
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], action=action))
            try:
                assert [await caller.served_by(path=url) for url in urls] == ["a 200"] * 6
                assert [seen.path for seen in a.cue.requests()] == ["/v2/p?x=1", "/v2/p?x=2"] * 3
                assert routed == ["/p?x=1", "/p?x=2"]
            finally:
                await caller.close()


@HTTP_KINDS
async def test_more_urls_than_the_memo_holds_still_route_correctly(
    kind: str, feed: FakeXds, routed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RouteMemo, "MAX_URLS", 4)
    urls = [f"/{side}/{i}" for i in range(5) for side in ("a", "b")]
    with http_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = f"many-{kind}:{PORT}"
            routes = [prefix_route("/a/", "side-a"), prefix_route("/b/", "side-b")]
            serve_routes(feed, target, routes, {"side-a": [a.port], "side-b": [b.port]})
            caller = HttpCaller(kind, mesh, target)
            try:
                for _ in range(2):
                    for url in urls:
                        assert await caller.served_by(path=url) == f"{url[1]} 200"
                        assert 1 <= memo_size(caller) <= 4
                assert [s.path for s in a.cue.requests()] == [u for u in urls if "/a/" in u] * 2
                assert [s.path for s in b.cue.requests()] == [u for u in urls if "/b/" in u] * 2
                full = len(routed)
                assert await caller.served_by(path=urls[-1]) == "b 200"  # still remembered
                assert len(routed) == full
            finally:
                await caller.close()


@HTTP_KINDS
async def test_header_matched_routes_match_each_request(
    kind: str, feed: FakeXds, routed: list[str]
) -> None:
    with http_upstreams(["v1", "v2"]) as (v1, v2):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            v2_route = xds.Route(
                "v2", xds.RouteMatch(PREFIX, "/", headers=(V2_ONLY,)), xds.RouteAction("v2")
            )
            target = publish(
                feed, f"hdr-{kind}", [v1.port], before=[v2_route], more_clusters={"v2": [v2.port]}
            )
            caller = HttpCaller(kind, mesh, target)
            try:
                answers = []
                for _ in range(3):
                    answers.append(await caller.served_by(path="/p", headers={"x-v": "2"}))
                    answers.append(await caller.served_by(path="/p"))
                assert answers == ["v2 200", "v1 200"] * 3
                assert routed == ["/p"] * 6  # not reusable: routed every time
                assert memo_size(caller) == 0
            finally:
                await caller.close()
