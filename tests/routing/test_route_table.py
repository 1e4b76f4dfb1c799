"""RouteTable: virtual host precedence, every matcher kind, first match wins."""

from __future__ import annotations

import pytest

from meshlib.errors import NoRouteError
from meshlib.routing._route_table import RouteTable
from meshlib.xds_client.resources import (
    ClusterWeight,
    HeaderMatcher,
    HeaderMatchKind,
    PathMatchKind,
    QueryParameterMatcher,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)
from tests.routing.builders import prefix_route

NO_HEADERS: dict[str, str] = {}


def vhost(name: str, *domains: str) -> VirtualHost:
    return VirtualHost(name, domains, (prefix_route("", name),))


def table_of(*vhosts: VirtualHost) -> RouteTable:
    return RouteTable(RouteConfigResource("rc", vhosts))


def cluster_for(table: RouteTable, authority: str, path: str = "/", **headers: str) -> str:
    return table.match(authority, path, headers).cluster


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("api.example.com", "exact"),
        ("API.Example.COM", "exact"),
        ("x.api.example.com", "long-suffix"),
        ("x.example.com", "short-suffix"),
        ("api.example.org", "long-prefix"),
        ("api.other", "short-prefix"),
        ("unrelated", "default"),
    ],
)
def test_domain_precedence(authority: str, expected: str) -> None:
    table = table_of(
        vhost("default", "*"),
        vhost("short-prefix", "api.*"),
        vhost("long-prefix", "api.example.*"),
        vhost("short-suffix", "*.example.com"),
        vhost("long-suffix", "*.api.example.com"),
        vhost("exact", "api.example.com"),
    )
    assert cluster_for(table, authority) == expected


def test_wildcard_never_matches_empty_and_no_vhost_raises() -> None:
    table = table_of(vhost("suffix", "*.foo.com"))
    with pytest.raises(NoRouteError, match="no virtual host"):
        cluster_for(table, ".foo.com")


def test_fallback_authority_is_tried_when_host_header_has_no_vhost() -> None:
    table = table_of(vhost("svc", "svc:80"))
    assert table.match("svc", "/", NO_HEADERS, fallback_authority="svc:80").cluster == "svc"


def routes_table(*routes: Route) -> RouteTable:
    return RouteTable(RouteConfigResource("rc", (VirtualHost("vh", ("*",), routes),)))


def route(name: str, match: RouteMatch) -> Route:
    return Route(name, match, RouteAction(cluster=name))


def test_first_matching_route_wins() -> None:
    table = routes_table(
        route("api-v2", RouteMatch(PathMatchKind.PREFIX, "/api/v2")),
        route("api", RouteMatch(PathMatchKind.PREFIX, "/api")),
        route("api-v2-shadowed", RouteMatch(PathMatchKind.PREFIX, "/api/v2/x")),
        route("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert cluster_for(table, "h", "/api/v2/x/1") == "api-v2"
    assert cluster_for(table, "h", "/api/v1") == "api"
    assert cluster_for(table, "h", "/other") == "rest"


def test_path_kinds_and_case_sensitivity() -> None:
    table = routes_table(
        route("exact", RouteMatch(PathMatchKind.PATH, "/exact")),
        route("ci", RouteMatch(PathMatchKind.PREFIX, "/CI/", case_sensitive=False)),
        route("regex", RouteMatch(PathMatchKind.SAFE_REGEX, r"/users/[0-9]+")),
        route("sep", RouteMatch(PathMatchKind.PATH_SEPARATED_PREFIX, "/sep")),
    )
    assert cluster_for(table, "h", "/exact?x=1") == "exact"
    assert cluster_for(table, "h", "/ci/thing") == "ci"
    assert cluster_for(table, "h", "/users/42") == "regex"
    assert cluster_for(table, "h", "/sep") == "sep"
    assert cluster_for(table, "h", "/sep/a") == "sep"
    for path in ("/exact/more", "/users/42x", "/separate", "/Exact"):
        with pytest.raises(NoRouteError, match="no route"):
            cluster_for(table, "h", path)


def header_table(matcher: HeaderMatcher) -> RouteTable:
    return routes_table(route("hit", RouteMatch(PathMatchKind.PREFIX, "/", headers=(matcher,))))


@pytest.mark.parametrize(
    ("matcher", "hits", "misses"),
    [
        (HeaderMatcher("x-v", HeaderMatchKind.EXACT, "v1"), ["v1"], ["v2", None]),
        (
            HeaderMatcher("x-v", HeaderMatchKind.EXACT, "V1", ignore_case=True),
            ["v1", "V1"],
            ["v2"],
        ),
        (HeaderMatcher("x-v", HeaderMatchKind.PREFIX, "ab"), ["abc"], ["cab"]),
        (HeaderMatcher("x-v", HeaderMatchKind.SUFFIX, "bc"), ["abc"], ["bca"]),
        (HeaderMatcher("x-v", HeaderMatchKind.CONTAINS, "b"), ["abc"], ["ac"]),
        (HeaderMatcher("x-v", HeaderMatchKind.SAFE_REGEX, "v[0-9]+"), ["v12"], ["v1a", "xv1"]),
        (HeaderMatcher("x-v", HeaderMatchKind.PRESENT), ["", "x"], [None]),
        (HeaderMatcher("x-v", HeaderMatchKind.PRESENT, present=False), [None], ["x"]),
        (
            HeaderMatcher("x-v", HeaderMatchKind.RANGE, range_start=10, range_end=20),
            ["10", "19"],
            ["20", "9", "abc", None],
        ),
        (HeaderMatcher("x-v", HeaderMatchKind.EXACT, "v1", invert=True), ["v2"], ["v1", None]),
        (HeaderMatcher("x-v", HeaderMatchKind.PRESENT, invert=True), [None], ["x"]),
    ],
)
def test_header_matchers(
    matcher: HeaderMatcher, hits: list[str | None], misses: list[str | None]
) -> None:
    table = header_table(matcher)
    for value in hits:
        headers = {} if value is None else {"x-v": value}
        assert table.match("h", "/", headers).cluster == "hit", value
    for value in misses:
        headers = {} if value is None else {"x-v": value}
        with pytest.raises(NoRouteError):
            table.match("h", "/", headers)
    assert table.uses_headers


def test_query_parameter_matchers() -> None:
    table = routes_table(
        route(
            "q",
            RouteMatch(
                PathMatchKind.PREFIX,
                "/",
                query_parameters=(
                    QueryParameterMatcher("debug", HeaderMatchKind.EXACT, "1"),
                    QueryParameterMatcher("user", HeaderMatchKind.PRESENT),
                ),
            ),
        ),
        route("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert cluster_for(table, "h", "/x?debug=1&user=") == "q"
    assert cluster_for(table, "h", "/x?debug=1&debug=2&user=a") == "q"
    assert cluster_for(table, "h", "/x?debug=2&user=a") == "rest"
    assert cluster_for(table, "h", "/x?debug=1") == "rest"


def test_runtime_fraction_zero_and_full() -> None:
    table = routes_table(
        route("never", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=0)),
        route("always", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=1_000_000)),
    )
    assert {cluster_for(table, "h", "/") for _ in range(50)} == {"always"}


def test_runtime_fraction_is_drawn_per_request() -> None:
    table = routes_table(
        route("half", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=500_000)),
        route("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    seen = [cluster_for(table, "h", "/") for _ in range(2000)]
    assert 800 < seen.count("half") < 1200


def test_weighted_clusters_follow_weights() -> None:
    action = RouteAction(weighted_clusters=(ClusterWeight("a", 3), ClusterWeight("b", 1)))
    table = routes_table(Route("w", RouteMatch(PathMatchKind.PREFIX, "/"), action))
    seen = [cluster_for(table, "h", "/") for _ in range(4000)]
    assert 2700 < seen.count("a") < 3300


def test_non_forwarding_route_raises() -> None:
    table = routes_table(Route("deny", RouteMatch(PathMatchKind.PREFIX, "/"), None))
    with pytest.raises(NoRouteError, match="does not forward"):
        cluster_for(table, "h", "/")


def test_bad_regex_fails_at_build_time_naming_the_field() -> None:
    bad = route("bad", RouteMatch(PathMatchKind.SAFE_REGEX, "(?<=a)b"))
    with pytest.raises(ValueError, match=r"routes\[0\]\.match\.safe_regex: invalid RE2"):
        routes_table(bad)
