"""RDS features of issues 3 and 4: weighted clusters, mirrors, rewrites,
redirects, direct responses, header mutations, timeouts, hash policies and
typed_per_filter_config overrides."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

from meshlib.xds_client.resources import (
    ClusterWeight,
    DirectResponseAction,
    FaultAbort,
    FilterOverride,
    HashPolicy,
    HeaderAppendAction,
    HeaderMutations,
    HeaderValueOption,
    HTTPFault,
    LocalRateLimit,
    MaxStreamDuration,
    RedirectAction,
    RegexRewrite,
    RequestMirrorPolicy,
)
from tests.xds_client import xds_builders as b
from tests.xds_client.change_steps import all_of
from tests.xds_client.rds_helpers import (
    config_with,
    decode,
    fault_any,
    first_route,
    first_route_action,
    header,
    route_with,
)

# --- valid decodes --------------------------------------------------------------------


def test_weighted_clusters_with_total_weight_and_per_cluster_settings() -> None:
    def change(r: Any) -> None:
        r.route.ClearField("cluster")
        wc = r.route.weighted_clusters
        wc.total_weight.value = 100
        one = wc.clusters.add(name="a", weight={"value": 1}, host_rewrite_literal="a.example")
        one.request_headers_to_add.append(header("x-a", "1"))
        one.response_headers_to_remove.append("X-Secret")
        one.typed_per_filter_config["fault"].CopyFrom(fault_any())
        wc.clusters.add(name="b", weight={"value": 99})
        wc.clusters.add(name="zero", weight={"value": 0})

    action = first_route(decode(route_with(change))).action
    assert action.total_weight == 100
    assert action.weighted_clusters == (
        ClusterWeight(
            name="a",
            weight=1,
            headers=HeaderMutations(
                request_headers_to_add=(HeaderValueOption("x-a", "1"),),
                response_headers_to_remove=("x-secret",),
            ),
            typed_per_filter_config={
                "fault": FilterOverride(
                    HTTPFault(abort=FaultAbort(http_status=503, per_million=500_000))
                )
            },
            host_rewrite="a.example",
        ),
        ClusterWeight(name="b", weight=99),
    )


def test_mirror_policies_and_their_inheritance() -> None:
    def change(c: Any) -> None:
        c.request_mirror_policies.add(cluster="config-shadow")
        vh = c.virtual_hosts[0]
        vh.routes.add(name="own", match={"prefix": "/own"}, route={"cluster": "c1"})
        vh.routes[1].route.request_mirror_policies.add(
            cluster="shadow",
            runtime_fraction={"default_value": {"numerator": 25}},
            disable_shadow_host_suffix_append=True,
            trace_sampled={"value": False},
        )

    got = decode(config_with(change))
    inherited, own = (first_route_action(r) for r in got.virtual_hosts[0].routes)
    assert inherited.request_mirror_policies == (RequestMirrorPolicy("config-shadow"),)
    assert own.request_mirror_policies == (RequestMirrorPolicy("shadow", 250_000, True, False),)
    assert got.cluster_names() == frozenset({"c1", "config-shadow", "shadow"})

    def vhost_level(c: Any) -> None:
        change(c)
        c.virtual_hosts[0].request_mirror_policies.add(cluster="vh-shadow")

    got = decode(config_with(vhost_level))
    assert first_route_action(first_route(got)).request_mirror_policies == (
        RequestMirrorPolicy("vh-shadow"),
    )


def test_rewrites() -> None:
    def change(r: Any) -> None:
        r.route.regex_rewrite.pattern.regex = "^/v1/(.*)$"
        r.route.regex_rewrite.substitution = "/v2/\\1"
        r.route.host_rewrite_literal = "upstream.example"

    action = first_route(decode(route_with(change))).action
    assert action.regex_rewrite == RegexRewrite("^/v1/(.*)$", "/v2/\\1")
    assert action.host_rewrite == "upstream.example"
    assert action.prefix_rewrite is None
    action = first_route(
        decode(route_with(lambda r: setattr(r.route, "prefix_rewrite", "/new")))
    ).action
    assert (action.prefix_rewrite, action.regex_rewrite) == ("/new", None)


def test_redirect() -> None:
    def change(r: Any) -> None:
        r.ClearField("route")
        r.redirect.https_redirect = True
        r.redirect.host_redirect = "new.example"
        r.redirect.port_redirect = 8443
        r.redirect.prefix_rewrite = "/moved"
        r.redirect.response_code = rc.RedirectAction.PERMANENT_REDIRECT
        r.redirect.strip_query = True

    route = first_route(decode(route_with(change)))
    assert route.action is None
    assert route.redirect == RedirectAction(
        scheme="https",
        host="new.example",
        port=8443,
        prefix_rewrite="/moved",
        response_code=308,
        strip_query=True,
    )

    def regex_redirect(r: Any) -> None:
        r.ClearField("route")
        r.redirect.scheme_redirect = "HTTP"
        r.redirect.regex_rewrite.pattern.regex = "^/a/(.*)"
        r.redirect.regex_rewrite.substitution = "/b/\\1"

    redirect = first_route(decode(route_with(regex_redirect))).redirect
    assert redirect == RedirectAction(
        scheme="http", regex_rewrite=RegexRewrite("^/a/(.*)", "/b/\\1")
    )
    path = first_route(
        decode(
            route_with(
                all_of(
                    lambda r: r.ClearField("route"),
                    lambda r: setattr(r.redirect, "path_redirect", "/x?y=1"),
                )
            )
        )
    ).redirect
    assert path == RedirectAction(path_redirect="/x?y=1")


def test_direct_response() -> None:
    def change(r: Any) -> None:
        r.ClearField("route")
        r.direct_response.status = 503
        r.direct_response.body.inline_string = "down for maintenance"

    route = first_route(decode(route_with(change)))
    assert route.direct_response == DirectResponseAction(503, b"down for maintenance")
    assert route.action is None

    def raw(r: Any) -> None:
        r.ClearField("route")
        r.direct_response.status = 200
        r.direct_response.body.inline_bytes = b"\x00\x01"

    assert first_route(decode(route_with(raw))).direct_response == DirectResponseAction(
        200, b"\x00\x01"
    )


def test_header_mutations_at_every_level() -> None:
    def change(c: Any) -> None:
        c.most_specific_header_mutations_wins = True
        c.response_headers_to_add.append(header("x-config", "1"))
        vh = c.virtual_hosts[0]
        vh.request_headers_to_remove.append("x-drop")
        route = vh.routes[0]
        route.request_headers_to_add.extend(
            [
                header("X-Add", "v"),
                header("x-once", "v", append_action=base_pb2.HeaderValueOption.ADD_IF_ABSENT),
                header("x-set", "v", append={"value": False}),
                header("x-keep", "", keep_empty_value=True),
            ]
        )
        route.response_headers_to_add.append(header("x-over", "%UPSTREAM_HOST%", append_action=3))

    got = decode(config_with(change))
    assert got.most_specific_header_mutations_wins
    assert got.headers == HeaderMutations(
        response_headers_to_add=(HeaderValueOption("x-config", "1"),)
    )
    assert got.virtual_hosts[0].headers == HeaderMutations(request_headers_to_remove=("x-drop",))
    assert first_route(got).headers == HeaderMutations(
        request_headers_to_add=(
            HeaderValueOption("x-add", "v"),
            HeaderValueOption("x-once", "v", HeaderAppendAction.ADD_IF_ABSENT),
            HeaderValueOption("x-set", "v", HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD),
            HeaderValueOption("x-keep", "", keep_empty_value=True),
        ),
        response_headers_to_add=(
            HeaderValueOption("x-over", "%UPSTREAM_HOST%", HeaderAppendAction.OVERWRITE_IF_EXISTS),
        ),
    )


def test_timeouts() -> None:
    def change(r: Any) -> None:
        r.route.timeout.seconds = 3
        r.route.idle_timeout.seconds = 60
        msd = r.route.max_stream_duration
        msd.max_stream_duration.seconds = 10
        msd.grpc_timeout_header_max.seconds = 5
        msd.grpc_timeout_header_offset.nanos = 50_000_000

    action = first_route(decode(route_with(change))).action
    assert action.timeout_s == 5.0  # gRPC's pick: grpc_timeout_header_max first
    assert action.request_timeout_s == 3.0
    assert action.idle_timeout_s == 60.0
    assert action.max_stream_duration == MaxStreamDuration(10.0, 5.0, 0.05)
    plain = first_route(decode(b.route_config())).action
    assert (plain.request_timeout_s, plain.idle_timeout_s, plain.max_stream_duration) == (
        None,
        None,
        None,
    )
    zero = first_route(decode(route_with(lambda r: r.route.timeout.SetInParent()))).action
    assert (zero.timeout_s, zero.request_timeout_s) == (None, 0.0)


def test_hash_policies() -> None:
    def change(r: Any) -> None:
        r.route.hash_policy.add(cookie={"name": "session", "ttl": {"seconds": 60}, "path": "/"})
        r.route.hash_policy.add(query_parameter={"name": "user"}, terminal=True)
        r.route.hash_policy.add(connection_properties={"source_ip": True})
        r.route.hash_policy.add(filter_state={"key": "io.grpc.channel_id"})

    assert first_route(decode(route_with(change))).action.hash_policies == (
        HashPolicy("cookie", "session", cookie_ttl_s=60.0, cookie_path="/"),
        HashPolicy("query_parameter", "user", terminal=True),
        HashPolicy("source_ip"),
        HashPolicy("filter_state", "io.grpc.channel_id"),
    )


def test_typed_per_filter_config_on_route_vhost_and_config() -> None:
    limit = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="rl",
        token_bucket={"max_tokens": 10, "fill_interval": {"seconds": 1}},
        filter_enabled={"default_value": {"numerator": 100}},
        filter_enforced={"default_value": {"numerator": 100}},
    )

    def change(c: Any) -> None:
        c.typed_per_filter_config["rl"].CopyFrom(b.pack(limit))
        vh = c.virtual_hosts[0]
        vh.typed_per_filter_config["fault"].CopyFrom(
            b.pack(rc.FilterConfig(config=fault_any(), is_optional=True))
        )
        route = vh.routes[0]
        route.typed_per_filter_config["fault"].CopyFrom(b.pack(rc.FilterConfig(disabled=True)))
        route.typed_per_filter_config["rbac"].CopyFrom(
            b.pack(rc.FilterConfig(config=b.pack(rbac_pb2.RBACPerRoute()), is_optional=True))
        )

    got = decode(config_with(change))
    (rl,) = got.typed_per_filter_config.values()
    assert isinstance(rl.config, LocalRateLimit)
    assert rl.config.filter_enabled_per_million == 1_000_000
    vh_fault = got.virtual_hosts[0].typed_per_filter_config["fault"]
    assert isinstance(vh_fault.config, HTTPFault) and not vh_fault.disabled
    # the disabled fault stays; the optional unknown rbac override is skipped
    assert dict(first_route(got).typed_per_filter_config) == {
        "fault": FilterOverride(config=None, disabled=True)
    }


def test_models_stay_hashable() -> None:
    def change(r: Any) -> None:
        r.typed_per_filter_config["fault"].CopyFrom(fault_any())
        r.request_headers_to_add.append(header("x", "y"))

    got = decode(route_with(change))
    assert hash(got) == hash(decode(route_with(change)))
