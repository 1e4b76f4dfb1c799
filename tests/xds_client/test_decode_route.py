from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import ROUTE_CONFIG
from meshlib.xds_client.resources import (
    ClusterWeight,
    HashPolicy,
    HeaderMatcher,
    HeaderMatchKind,
    PathMatchKind,
    QueryParameterMatcher,
    RouteConfigResource,
)
from tests.xds_client import xds_builders as b


def decode(message: Any) -> RouteConfigResource:
    return ROUTE_CONFIG.decode(b.pack(message))


def with_route(change: Callable[[Any], None], *, extra: Any = None) -> Any:
    config = b.route_config()
    change(config.virtual_hosts[0].routes[0])
    if extra is not None:
        config.virtual_hosts[0].routes.append(extra)
    return config


def only_route(config: RouteConfigResource) -> Any:
    (vhost,) = config.virtual_hosts
    (route,) = vhost.routes
    return route


def regex(pattern: str) -> Any:
    return regex_pb2.RegexMatcher(regex=pattern)


def test_simple_route() -> None:
    got = decode(b.route_config("rc", "c1", ("a:80", "a")))
    assert got.name == "rc"
    assert got.virtual_hosts[0].domains == ("a:80", "a")
    route = only_route(got)
    assert route.match.path_kind is PathMatchKind.PREFIX
    assert route.match.path == "/"
    assert route.action.cluster == "c1"
    assert route.action.timeout_s is None


def test_full_match() -> None:
    def change(r: Any) -> None:
        r.match.ClearField("prefix")
        r.match.safe_regex.regex = "/svc/[a-z]+"
        r.match.case_sensitive.value = False
        r.match.runtime_fraction.default_value.numerator = 25  # of HUNDRED
        r.match.headers.extend(
            [
                rc.HeaderMatcher(name="x-exact", exact_match="v", invert_match=True),
                rc.HeaderMatcher(name="x-re", safe_regex_match=regex("a.*")),
                rc.HeaderMatcher(name="x-range", range_match={"start": 1, "end": 9}),
                rc.HeaderMatcher(name="x-present", present_match=False),
                rc.HeaderMatcher(
                    name="x-sm", string_match=string_pb2.StringMatcher(suffix="z", ignore_case=True)
                ),
            ]
        )
        r.match.query_parameters.extend(
            [
                rc.QueryParameterMatcher(name="q", string_match={"prefix": "p"}),
                rc.QueryParameterMatcher(name="debug", present_match=True),
            ]
        )

    match = only_route(decode(with_route(change))).match
    assert match.path_kind is PathMatchKind.SAFE_REGEX
    assert match.path == "/svc/[a-z]+"
    assert match.case_sensitive is False
    assert match.fraction_per_million == 250_000
    assert match.headers == (
        HeaderMatcher("x-exact", HeaderMatchKind.EXACT, "v", invert=True),
        HeaderMatcher("x-re", HeaderMatchKind.SAFE_REGEX, "a.*"),
        HeaderMatcher("x-range", HeaderMatchKind.RANGE, range_start=1, range_end=9),
        HeaderMatcher("x-present", HeaderMatchKind.PRESENT, present=False),
        HeaderMatcher("x-sm", HeaderMatchKind.SUFFIX, "z", ignore_case=True),
    )
    assert match.query_parameters == (
        QueryParameterMatcher("q", HeaderMatchKind.PREFIX, "p"),
        QueryParameterMatcher("debug", HeaderMatchKind.PRESENT),
    )


def test_action_details() -> None:
    def change(r: Any) -> None:
        action = r.route
        action.ClearField("cluster")
        action.weighted_clusters.clusters.extend(
            [
                rc.WeightedCluster.ClusterWeight(name="v1", weight={"value": 3}),
                rc.WeightedCluster.ClusterWeight(name="v0", weight={"value": 0}),
                rc.WeightedCluster.ClusterWeight(name="v2", weight={"value": 1}),
            ]
        )
        action.timeout.seconds = 9
        action.max_stream_duration.max_stream_duration.seconds = 2
        action.prefix_rewrite = "/new"
        action.host_rewrite_literal = "backend"
        action.hash_policy.extend(
            [
                rc.RouteAction.HashPolicy(header={"header_name": "x-user"}, terminal=True),
                rc.RouteAction.HashPolicy(cookie={"name": "sid"}),
                rc.RouteAction.HashPolicy(connection_properties={"source_ip": True}),
                rc.RouteAction.HashPolicy(filter_state={"key": "io.grpc.channel_id"}),
            ]
        )

    action = only_route(decode(with_route(change))).action
    assert action.weighted_clusters == (ClusterWeight("v1", 3), ClusterWeight("v2", 1))
    assert action.cluster is None
    assert action.timeout_s == 2.0  # max_stream_duration wins over timeout, as in gRPC
    assert action.prefix_rewrite == "/new"
    assert action.host_rewrite == "backend"
    assert action.hash_policies == (
        HashPolicy("header", "x-user", terminal=True),
        HashPolicy("cookie", "sid"),
        HashPolicy("source_ip"),
        HashPolicy("filter_state", "io.grpc.channel_id"),
    )


def test_timeout_zero_means_none_and_plain_timeout_used() -> None:
    assert (
        only_route(decode(with_route(lambda r: r.route.timeout.SetInParent()))).action.timeout_s
        is None
    )
    got = decode(with_route(lambda r: setattr(r.route.timeout, "nanos", 500_000_000)))
    assert only_route(got).action.timeout_s == 0.5


def test_unsupported_routes_are_skipped_or_fail_requests() -> None:
    skipped_header = rc.Route(
        match=rc.RouteMatch(prefix="/h"), route=rc.RouteAction(cluster_header="x-cluster")
    )
    skipped_connect = rc.Route(
        match=rc.RouteMatch(connect_matcher={}), route=rc.RouteAction(cluster="c")
    )
    redirect = rc.Route(name="r", match=rc.RouteMatch(prefix="/r"), redirect={"host_redirect": "x"})
    config = b.route_config()
    config.virtual_hosts[0].routes.extend([skipped_header, skipped_connect, redirect])
    routes = decode(config).virtual_hosts[0].routes
    assert [r.name for r in routes] == ["default", "r"]
    assert routes[1].action is None


INVALID: list[tuple[str, Callable[[], Any], str]] = [
    ("no name", lambda: b.route_config(name=""), 'RouteConfiguration "": name: required'),
    ("no domains", lambda: b.route_config(domains=()), 'virtual_hosts[0] "vh".domains: must not'),
    (
        "no match",
        lambda: with_route(lambda r: r.ClearField("match")),
        'RouteConfiguration "rc": virtual_hosts[0] "vh".routes[0].match: required',
    ),
    (
        "no path specifier",
        lambda: with_route(lambda r: r.match.ClearField("prefix")),
        "routes[0].match: path specifier required",
    ),
    (
        "bad path regex",
        lambda: with_route(lambda r: r.match.safe_regex.CopyFrom(regex("a("))),
        "routes[0].match.safe_regex: invalid regex 'a('",
    ),
    (
        "bad header regex",
        lambda: with_route(
            lambda r: r.match.headers.append(
                rc.HeaderMatcher(name="h", safe_regex_match=regex("["))
            )
        ),
        "routes[0].match.headers[0].safe_regex_match: invalid regex '['",
    ),
    (
        "bad string_match regex",
        lambda: with_route(
            lambda r: r.match.headers.append(
                rc.HeaderMatcher(name="h", string_match={"safe_regex": {"regex": "(?P<"}})
            )
        ),
        "headers[0].string_match.safe_regex: invalid regex",
    ),
    (
        "header matcher without kind",
        lambda: with_route(lambda r: r.match.headers.append(rc.HeaderMatcher(name="h"))),
        "headers[0]: header match specifier required",
    ),
    (
        "header matcher without name",
        lambda: with_route(lambda r: r.match.headers.append(rc.HeaderMatcher(exact_match="v"))),
        "headers[0].name: required",
    ),
    (
        "query matcher custom",
        lambda: with_route(
            lambda r: r.match.query_parameters.append(
                rc.QueryParameterMatcher(name="q", string_match={"custom": {"name": "x"}})
            )
        ),
        "query_parameters[0].string_match.custom: not supported",
    ),
    (
        "no cluster specifier",
        lambda: with_route(lambda r: r.route.ClearField("cluster")),
        "routes[0].route: cluster specifier required",
    ),
    (
        "zero total weight",
        lambda: with_route(
            lambda r: r.route.weighted_clusters.clusters.append(
                rc.WeightedCluster.ClusterWeight(name="a", weight={"value": 0})
            )
        ),
        "routes[0].route.weighted_clusters: cluster weights must sum to more than 0",
    ),
    (
        "weighted cluster without name",
        lambda: with_route(
            lambda r: r.route.weighted_clusters.clusters.append(
                rc.WeightedCluster.ClusterWeight(weight={"value": 1})
            )
        ),
        "weighted_clusters.clusters[0].name: required",
    ),
    (
        "bad hash policy regex",
        lambda: with_route(
            lambda r: r.route.hash_policy.append(
                rc.RouteAction.HashPolicy(
                    header={"header_name": "h", "regex_rewrite": {"pattern": {"regex": "("}}}
                )
            )
        ),
        "hash_policy[0].header.regex_rewrite: invalid regex",
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_route_config(build: Callable[[], Any], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(build())
    assert expected in str(info.value)
