"""plan_request: the pure routing decision the transports execute."""

from __future__ import annotations

import pytest
import xxhash

from meshlib.errors import NoRouteError
from meshlib.routing import _actions as actions
from meshlib.routing._route_table import RouteTable
from meshlib.routing.plan import ForwardPlan, LocalReply, plan_request
from meshlib.xds_client.resources import (
    NO_HEADER_MUTATIONS,
    ClusterWeight,
    DirectResponseAction,
    HashPolicy,
    HeaderMatcher,
    HeaderMatchKind,
    HeaderMutations,
    HeaderValueOption,
    PathMatchKind,
    RedirectAction,
    RequestMirrorPolicy,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)

TARGET = "web:8080"


def plan(
    t: RouteTable, path: str, headers: dict[str, str] | None = None
) -> ForwardPlan | LocalReply:
    hs = headers or {}
    return plan_request(
        t,
        target=TARGET,
        scheme="http",
        authority=TARGET,
        path=path,
        headers=hs,
        values_of=lambda name: [hs[name]] if name in hs else [],
        source_ip=lambda: "10.1.2.3",
    )


def table(*routes: Route, config_headers: HeaderMutations = NO_HEADER_MUTATIONS) -> RouteTable:
    vhost = VirtualHost(
        "vh",
        (TARGET,),
        routes,
        headers=HeaderMutations(request_headers_to_add=(HeaderValueOption("x-vh", "1"),)),
    )
    return RouteTable(RouteConfigResource("rc", (vhost,), headers=config_headers))


def test_forward_plan_with_rewrites_hash_and_headers() -> None:
    action = RouteAction(
        cluster="api",
        prefix_rewrite="/",
        host_rewrite="api.internal",
        hash_policies=(HashPolicy("header", "x-user"),),
    )
    route = Route(
        "r",
        RouteMatch(PathMatchKind.PREFIX, "/api/"),
        action,
        headers=HeaderMutations(
            request_headers_to_add=(HeaderValueOption("x-route", "r"),),
            response_headers_to_remove=("server",),
        ),
    )
    got = plan(table(route), "/api/items?x=1", {"x-user": "ann"})
    assert isinstance(got, ForwardPlan)
    assert (got.cluster, got.path, got.path_rewritten, got.authority) == (
        "api",
        "/items?x=1",
        True,
        "api.internal",
    )
    assert got.request_hash == xxhash.xxh64_intdigest(b"ann")
    headers: list[tuple[str, str]] = [("x-user", "ann")]
    assert got.request_headers is not None and got.response_headers is not None
    got.request_headers.apply(headers)
    assert headers == [("x-user", "ann"), ("x-route", "r"), ("x-vh", "1")]
    assert got.mirrors == ()


def test_plain_route_plans_without_extras() -> None:
    got = plan(
        table(Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="c"))), "/a"
    )
    assert isinstance(got, ForwardPlan)
    assert got.request_hash is None and not got.path_rewritten and got.response_headers is None
    assert got.authority == TARGET and got.path == "/a"


def test_weighted_cluster_level_headers_and_host_rewrite(monkeypatch: pytest.MonkeyPatch) -> None:
    action = RouteAction(
        weighted_clusters=(
            ClusterWeight(
                "v1",
                50,
                headers=HeaderMutations(request_headers_to_add=(HeaderValueOption("x-v", "1"),)),
                host_rewrite="v1.internal",
            ),
            ClusterWeight("v2", 50),
        )
    )
    t = table(Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), action))
    monkeypatch.setattr(actions, "_randrange", lambda total: 0)
    first = plan(t, "/")
    assert isinstance(first, ForwardPlan) and first.cluster == "v1"
    assert first.authority == "v1.internal"
    headers: list[tuple[str, str]] = []
    assert first.request_headers is not None
    first.request_headers.apply(headers)
    assert headers == [("x-v", "1"), ("x-vh", "1")]
    monkeypatch.setattr(actions, "_randrange", lambda total: 99)
    second = plan(t, "/")
    assert isinstance(second, ForwardPlan) and second.cluster == "v2" and second.authority == TARGET


def test_mirrors_get_shadow_authority_and_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    action = RouteAction(
        cluster="c",
        request_mirror_policies=(
            RequestMirrorPolicy("shadow"),
            RequestMirrorPolicy("keep", disable_shadow_host_suffix_append=True),
            RequestMirrorPolicy("tenth", fraction_per_million=100_000),
        ),
    )
    t = table(Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), action))
    monkeypatch.setattr(actions, "_randrange", lambda n: 100_000)  # just outside 10%
    got = plan(t, "/")
    assert isinstance(got, ForwardPlan)
    assert [(m.cluster, m.authority) for m in got.mirrors] == [
        ("shadow", "web-shadow:8080"),
        ("keep", TARGET),
    ]
    monkeypatch.setattr(actions, "_randrange", lambda n: 99_999)
    got = plan(t, "/")
    assert isinstance(got, ForwardPlan) and [m.cluster for m in got.mirrors][-1] == "tenth"


def test_local_replies_carry_response_header_mutations() -> None:
    mutations = HeaderMutations(response_headers_to_add=(HeaderValueOption("x-cfg", "yes"),))
    redirect = Route(
        "r",
        RouteMatch(PathMatchKind.PREFIX, "/old"),
        None,
        redirect=RedirectAction(prefix_rewrite="/new", response_code=308),
    )
    direct = Route(
        "d",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        None,
        direct_response=DirectResponseAction(503, b"down"),
    )
    t = table(redirect, direct, config_headers=mutations)
    moved = plan(t, "/old/x?q=1")
    assert isinstance(moved, LocalReply)
    assert (moved.status, moved.body) == (308, b"")
    assert moved.headers == [("location", "http://web:8080/new/x?q=1"), ("x-cfg", "yes")]
    down = plan(t, "/z")
    assert isinstance(down, LocalReply)
    assert (down.status, down.body) == (503, b"down")
    assert ("content-type", "text/plain") in down.headers and ("x-cfg", "yes") in down.headers


def test_non_forwarding_route_fails() -> None:
    t = table(Route("deny", RouteMatch(PathMatchKind.PREFIX, "/"), None))
    with pytest.raises(NoRouteError, match="'deny' in virtual host 'vh' does not forward"):
        plan(t, "/")


def test_plans_are_reusable_only_when_nothing_varies_per_request() -> None:
    catch_all = Route("all", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="api"))
    sampled = RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=500_000)
    assert not table(Route("s", sampled, RouteAction(cluster="api")), catch_all).deterministic
    rewritten = Route(
        "old",
        RouteMatch(PathMatchKind.PREFIX, "/old/"),
        RouteAction(cluster="api", prefix_rewrite="/new/"),
    )
    simple = table(rewritten, catch_all)
    assert simple.deterministic
    first = plan(simple, "/old/x")
    assert isinstance(first, ForwardPlan) and first.reusable and first.path == "/new/x"
    split = RouteAction(weighted_clusters=(ClusterWeight("a", 50), ClusterWeight("b", 50)))
    varying = [
        RouteAction(cluster="api", hash_policies=(HashPolicy("header", "x-user"),)),
        RouteAction(cluster="api", request_mirror_policies=(RequestMirrorPolicy("shadow"),)),
        split,
    ]
    for action in varying:
        decided = plan(table(Route("r", RouteMatch(PathMatchKind.PREFIX, "/"), action)), "/x")
        assert isinstance(decided, ForwardPlan) and not decided.reusable, action
    beta = HeaderMatcher("x-g", HeaderMatchKind.EXACT, "b")
    by_header = Route("h", RouteMatch(PathMatchKind.PREFIX, "/", headers=(beta,)), RouteAction("b"))
    header_table = table(by_header, catch_all)
    assert not header_table.deterministic
    decided = plan(header_table, "/x")
    assert isinstance(decided, ForwardPlan) and not decided.reusable
