"""Envoy's route-matching semantics beyond the basics, and route kinds."""

from __future__ import annotations

import random

import pytest

from meshlib.errors import NoRouteError
from meshlib.routing import _route_table as route_table_module
from meshlib.routing._route_table import RouteTable
from meshlib.xds_client.resources import (
    ClusterWeight,
    DirectResponseAction,
    HeaderMatcher,
    HeaderMatchKind,
    PathMatchKind,
    QueryParameterMatcher,
    RedirectAction,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)


def table(*routes: Route) -> RouteTable:
    return RouteTable(RouteConfigResource("rc", (VirtualHost("vh", ("*",), routes),)))


def to(name: str, match: RouteMatch) -> Route:
    return Route(name, match, RouteAction(cluster=name))


def hit(t: RouteTable, path: str, headers: dict[str, str] | None = None) -> str:
    return t.resolve("h", path, headers or {})[1].route.name


def test_safe_regex_ignores_case_sensitive_false() -> None:
    t = table(
        to("re", RouteMatch(PathMatchKind.SAFE_REGEX, "/Users/[0-9]+", case_sensitive=False)),
        to("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert hit(t, "/Users/1") == "re"
    assert hit(t, "/users/1") == "rest"  # Envoy: case_sensitive is ignored for regex


def test_regex_is_a_full_match_on_the_path_without_query() -> None:
    t = table(
        to("re", RouteMatch(PathMatchKind.SAFE_REGEX, "/a/[a-z]+")),
        to("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert hit(t, "/a/bc?x=1") == "re"
    assert hit(t, "/a/bc/d") == "rest"
    assert hit(t, "/x/a/bc") == "rest"


def test_case_insensitive_exact_path() -> None:
    t = table(to("p", RouteMatch(PathMatchKind.PATH, "/Login", case_sensitive=False)))
    assert hit(t, "/LOGIN") == "p"
    with pytest.raises(NoRouteError):
        hit(t, "/LOGIN/x")


def test_header_regex_ignores_ignore_case_and_string_matchers_honour_it() -> None:
    regex = HeaderMatcher("x-v", HeaderMatchKind.SAFE_REGEX, "v[a-z]", ignore_case=True)
    suffix = HeaderMatcher("x-s", HeaderMatchKind.SUFFIX, "END", ignore_case=True)
    t = table(to("r", RouteMatch(PathMatchKind.PREFIX, "/", headers=(regex, suffix))))
    assert hit(t, "/", {"x-v": "va", "x-s": "the-end"}) == "r"
    with pytest.raises(NoRouteError):
        hit(t, "/", {"x-v": "VA", "x-s": "the-end"})


def test_inverted_range_and_absent_header() -> None:
    rng = HeaderMatcher("x-n", HeaderMatchKind.RANGE, invert=True, range_start=-10, range_end=0)
    t = table(to("r", RouteMatch(PathMatchKind.PREFIX, "/", headers=(rng,))))
    assert hit(t, "/", {"x-n": "5"}) == "r"
    for headers in ({"x-n": "-1"}, {}):
        with pytest.raises(NoRouteError):
            hit(t, "/", headers)


def test_pseudo_headers_can_be_matched() -> None:
    method = HeaderMatcher(":method", HeaderMatchKind.EXACT, "POST")
    t = table(
        to("post", RouteMatch(PathMatchKind.PREFIX, "/", headers=(method,))),
        to("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert hit(t, "/", {":method": "POST"}) == "post"
    assert hit(t, "/", {":method": "GET"}) == "rest"


def test_query_matchers_regex_and_ignore_case() -> None:
    t = table(
        to(
            "q",
            RouteMatch(
                PathMatchKind.PREFIX,
                "/",
                query_parameters=(
                    QueryParameterMatcher("id", HeaderMatchKind.SAFE_REGEX, "[0-9]{3}"),
                    QueryParameterMatcher("mode", HeaderMatchKind.EXACT, "FAST", ignore_case=True),
                ),
            ),
        ),
        to("rest", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    assert hit(t, "/?id=123&mode=fast") == "q"
    assert hit(t, "/?id=1234&mode=fast") == "rest"
    assert hit(t, "/?mode=fast") == "rest"


def test_one_runtime_draw_is_shared_by_every_route(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[int] = []

    def fake_randrange(n: int) -> int:
        draws.append(n)
        return 300_000

    monkeypatch.setattr(route_table_module, "_randrange", fake_randrange)
    t = table(
        to("a20", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=200_000)),
        to("b50", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=500_000)),
    )
    assert hit(t, "/") == "b50"
    assert draws == [1_000_000]  # one draw for both routes


def test_shared_draw_gives_envoy_cumulative_fractions(monkeypatch: pytest.MonkeyPatch) -> None:
    # With one draw per request, route B (50%) after route A (20%) gets 30%.
    monkeypatch.setattr(route_table_module, "_randrange", random.Random(7).randrange)
    t = table(
        to("a", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=200_000)),
        to("b", RouteMatch(PathMatchKind.PREFIX, "/", fraction_per_million=500_000)),
        to("c", RouteMatch(PathMatchKind.PREFIX, "/")),
    )
    n = 20_000
    seen = [hit(t, "/") for _ in range(n)]
    for name, p in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(seen.count(name) - n * p) < 5 * sd, name


def test_route_kinds_resolve() -> None:
    redirect = Route(
        "r",
        RouteMatch(PathMatchKind.PREFIX, "/old"),
        None,
        redirect=RedirectAction(path_redirect="/new"),
    )
    direct = Route(
        "d",
        RouteMatch(PathMatchKind.PREFIX, "/d"),
        None,
        direct_response=DirectResponseAction(418, b"tea"),
    )
    deny = Route("x", RouteMatch(PathMatchKind.PREFIX, "/x"), None)
    t = table(redirect, direct, deny)
    assert t.resolve("h", "/old", {})[1].redirect is not None
    assert t.resolve("h", "/d", {})[1].direct_response == DirectResponseAction(418, b"tea")
    compiled = t.resolve("h", "/x", {})[1]
    assert compiled.forward is None and compiled.redirect is None
    with pytest.raises(NoRouteError, match="does not forward"):
        t.match("h", "/old", {})


def test_conflicting_route_kinds_and_bad_weights_are_refused() -> None:
    both = Route(
        "both",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        RouteAction(cluster="a"),
        direct_response=DirectResponseAction(200),
    )
    with pytest.raises(ValueError, match=r"routes\[0\]: more than one"):
        table(both)
    wrong_total = Route(
        "w",
        RouteMatch(PathMatchKind.PREFIX, "/"),
        RouteAction(
            weighted_clusters=(ClusterWeight("a", 1), ClusterWeight("b", 2)), total_weight=4
        ),
    )
    with pytest.raises(ValueError, match="total_weight: 4 but the weights sum to 3"):
        table(wrong_total)
    bad_code = Route(
        "r", RouteMatch(PathMatchKind.PREFIX, "/"), None, redirect=RedirectAction(response_code=200)
    )
    with pytest.raises(ValueError, match=r"redirect\.response_code: 200"):
        table(bad_code)
