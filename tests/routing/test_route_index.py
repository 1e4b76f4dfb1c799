"""The route index gives exactly the linear scan's answer, only faster.

A seeded generator builds random route tables (every path matcher kind, either
case sensitivity, headers, query parameters, runtime fractions) and random
requests; the indexed :class:`RouteTable` must pick the same route as a plain
first-match-wins scan over the same compiled matchers, drawing the runtime
fraction once per request in the same place.
"""

from __future__ import annotations

import random

import pytest

from meshlib.errors import NoRouteError
from meshlib.matching.matchers import CompiledRouteMatch, parse_query
from meshlib.routing._route_index import PathIndex, regex_literal_prefix
from meshlib.routing._route_table import RouteTable
from meshlib.xds_client.resources import (
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

SEGMENTS = ("a", "A", "ab", "aB", "b", "İ", "i̇", "x-y", "A.b", "")
REGEXES = (
    "/a.*",
    "/[aA]b?/.*",
    "/b",
    ".*y",
    "/(a|b)/[^/]+",
    "/ab*",
    "/ab+/?",
    "/ab?",
    "/ab{0,1}/b",
    "/a|/b",
    "/A\\.b",
    "/İ.*",
)
AUTHORITY = "svc:80"


def random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.3:
        path = path[: rng.randint(0, len(path))]  # partial segments, "" included
    return path


def random_match(rng: random.Random) -> RouteMatch:
    roll = rng.random()
    if roll < 0.4:
        kind, path = PathMatchKind.PREFIX, random_path(rng)
    elif roll < 0.65:
        kind, path = PathMatchKind.PATH, random_path(rng)
    elif roll < 0.85:
        kind, path = PathMatchKind.PATH_SEPARATED_PREFIX, random_path(rng).rstrip("/")
    else:
        kind, path = PathMatchKind.SAFE_REGEX, rng.choice(REGEXES)
    headers: tuple[HeaderMatcher, ...] = ()
    if rng.random() < 0.2:
        headers = (
            rng.choice(
                [
                    HeaderMatcher("x-env", HeaderMatchKind.EXACT, "prod"),
                    HeaderMatcher("x-env", HeaderMatchKind.PRESENT, present=False),
                    HeaderMatcher("X-Env", HeaderMatchKind.PREFIX, "D", ignore_case=True),
                ]
            ),
        )
    query: tuple[QueryParameterMatcher, ...] = ()
    if rng.random() < 0.15:
        query = (QueryParameterMatcher("v", HeaderMatchKind.EXACT, rng.choice(["1", "2"])),)
    fraction = rng.choice([None] * 6 + [0, 300_000, 700_000, 1_000_000])
    return RouteMatch(kind, path, rng.random() < 0.5, headers, query, fraction)


def random_table(rng: random.Random, routes: int) -> tuple[Route, ...]:
    return tuple(
        Route(f"r{i}", random_match(rng), RouteAction(cluster=f"c{i}")) for i in range(routes)
    )


def random_request(rng: random.Random) -> tuple[str, dict[str, str]]:
    path = random_path(rng)
    if rng.random() < 0.3:
        path += rng.choice(["?v=1", "?v=2", "?v=1&v=2", "?w=1", "?"])
    headers = rng.choice([{}, {"x-env": "prod"}, {"x-env": "dev"}, {"x-env": "Dev"}])
    return path, headers


def linear_scan(routes: tuple[Route, ...], path: str, headers: dict[str, str]) -> str | None:
    """The reference: every route in order, first match wins, one lazy draw per request."""
    bare, _, query = path.partition("?")
    params = parse_query(query)
    draw = -1
    for route in routes:
        match = CompiledRouteMatch(route.match, route.name)
        if not match.matches(bare, headers, params):
            continue
        fraction = match.fraction_per_million
        if fraction is not None:
            if draw < 0:
                draw = random.randrange(1_000_000)
            if draw >= fraction:
                continue
        return route.name
    return None


def indexed(table: RouteTable, path: str, headers: dict[str, str]) -> str | None:
    try:
        return table.resolve(AUTHORITY, path, headers)[1].route.name
    except NoRouteError:
        return None


@pytest.mark.parametrize("seed", range(6))
def test_indexed_table_agrees_with_linear_scan(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        routes = random_table(rng, rng.choice([1, 3, 5, 12, 40, 80]))
        table = RouteTable(RouteConfigResource("rc", (VirtualHost("vh", ("*",), routes),)))
        for _ in range(60):
            path, headers = random_request(rng)
            draw_seed = rng.getrandbits(32)
            random.seed(draw_seed)  # same runtime-fraction draw on both sides
            got = indexed(table, path, headers)
            random.seed(draw_seed)
            want = linear_scan(routes, path, headers)
            assert got == want, (path, headers, [r.match for r in routes])


@pytest.mark.parametrize("seed", range(4))
def test_candidates_cover_every_matching_path_in_order(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(40):
        matches = [random_match(rng) for _ in range(rng.choice([1, 6, 30]))]
        index = PathIndex(matches, scan_up_to=0)
        path_only = [
            CompiledRouteMatch(RouteMatch(m.path_kind, m.path, m.case_sensitive), "m")
            for m in matches
        ]
        for _ in range(60):
            path = random_path(rng)
            candidates = list(index.candidates(path))
            assert candidates == sorted(set(candidates))
            for i, compiled in enumerate(path_only):
                if compiled.matches(path, {}):
                    assert i in candidates, (path, matches[i])


def test_prefix_routes_yield_only_the_matching_ones() -> None:
    matches = [RouteMatch(PathMatchKind.PREFIX, f"/svc{i}/") for i in range(500)]
    matches.append(RouteMatch(PathMatchKind.PREFIX, "/"))
    index = PathIndex(matches)
    assert list(index.candidates("/svc499/items")) == [499, 500]
    assert list(index.candidates("/other")) == [500]


def test_case_insensitive_and_separated_prefixes_and_regexes_keep_route_order() -> None:
    matches = [
        RouteMatch(PathMatchKind.SAFE_REGEX, "/API/.*"),
        RouteMatch(PathMatchKind.PREFIX, "/api/", case_sensitive=False),
        RouteMatch(PathMatchKind.PATH_SEPARATED_PREFIX, "/API"),
        RouteMatch(PathMatchKind.PATH, "/api/v1", case_sensitive=False),
        RouteMatch(PathMatchKind.PATH_SEPARATED_PREFIX, "/Api", case_sensitive=False),
    ]
    index = PathIndex(matches, scan_up_to=0)
    assert list(index.candidates("/API/V1")) == [0, 1, 2, 3, 4]
    assert list(index.candidates("/API")) == [2, 4]
    assert list(index.candidates("/api/v1")) == [1, 3, 4]  # the regex is case-sensitive
    assert list(PathIndex([RouteMatch(PathMatchKind.SAFE_REGEX, ".*")]).candidates("/x")) == [0]


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("/api/v1/.*", "/api/v1/"),
        ("/api/v[12]", "/api/v"),
        ("/ab*", "/a"),  # b may be absent
        ("/ab?", "/a"),
        ("/ab{0,2}", "/a"),
        ("/ab+", "/ab"),  # at least one b
        ("/a$", "/a"),
        ("/a|/b", ""),  # alternation: no common literal assumed
        ("^/a", ""),
        ("(?i)/a", ""),
        ("\\/a", ""),
        ("/a\\.b", "/a"),
        ("", ""),
    ],
)
def test_regex_literal_prefix(pattern: str, literal: str) -> None:
    assert regex_literal_prefix(pattern) == literal


def test_lower_casing_that_changes_length_is_matched_like_the_scan() -> None:
    # "İ".lower() is two code points: the folded path is longer than the path.
    routes = (
        Route("dotted", RouteMatch(PathMatchKind.PREFIX, "/i̇x", False), RouteAction(cluster="a")),
        Route("any", RouteMatch(PathMatchKind.PREFIX, "/"), RouteAction(cluster="b")),
    )
    table = RouteTable(RouteConfigResource("rc", (VirtualHost("vh", ("*",), routes * 3),)))
    assert indexed(table, "/İx", {}) == linear_scan(routes, "/İx", {}) == "dotted"
