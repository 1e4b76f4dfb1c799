"""VirtualService → Envoy routes: each field's translation, read back from the protos."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities_pb2,
)
from envoy.type.v3 import percent_pb2

from controlplane.model import MeshConfig
from controlplane.traffic_model import (
    ConsistentHash,
    Destination,
    DestinationRule,
    FaultAbort,
    FaultDelay,
    HashCookie,
    HeaderOperations,
    Headers,
    HedgePolicy,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirror,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    LoadBalancerSettings,
    LocalRateLimit,
    MatchKind,
    RedirectPortPolicy,
    RegexRewrite,
    StringMatch,
    Subset,
    TrafficPolicy,
    VirtualService,
    VirtualServiceExtensions,
)
from controlplane.translate import TranslationError
from controlplane.translate.ambiguity import ambiguous_destinations
from controlplane.translate.http_filters import (
    FAULT_FILTER_NAME,
    LOCAL_RATE_LIMIT_FILTER_NAME,
    ROUTER_FILTER_NAME,
)
from meshlib.xds_client.decode_listener import decode_listener
from meshlib.xds_client.decode_route import decode_route_configuration
from tests.controlplane.every_route_feature import every_feature
from tests.controlplane.route_cases import (
    config,
    entry,
    manager_of,
    only_route,
    resources,
    routes_of,
    to,
    vs,
)
from tests.support.backends import Backend

EXACT, PREFIX, REGEX, PRESENT = (
    MatchKind.EXACT,
    MatchKind.PREFIX,
    MatchKind.REGEX,
    MatchKind.PRESENT,
)
V1 = "outbound|8080|v1|attendees"
V2 = "outbound|8080|v2|attendees"


def rule(*match: HTTPMatchRequest, **fields: object) -> HTTPRoute:
    fields.setdefault("route", (to("attendees", "v1"),))
    return HTTPRoute(match=match, **fields)  # type: ignore[arg-type]


# --- without a VirtualService ------------------------------------------------


def test_default_route_sends_everything_to_the_service_with_istio_defaults() -> None:
    (route,) = routes_of(config())
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|8080||attendees"
    assert route.route.timeout.ToSeconds() == 0
    assert route.route.retry_policy.num_retries.value == 2


# --- match -----------------------------------------------------------------


def test_one_route_per_match_block_in_order() -> None:
    blocks = (
        HTTPMatchRequest(name="a", uri=StringMatch(EXACT, "/a")),
        HTTPMatchRequest(name="b", uri=StringMatch(PREFIX, "/b")),
    )
    routes = routes_of(
        config(vs(rule(*blocks, name="r1"), rule(name="rest", route=(to("attendees", "v2"),))))
    )
    assert [r.name for r in routes] == ["r1.a", "r1.b", "rest"]
    assert routes[0].match.path == "/a"
    assert routes[1].match.prefix == "/b"
    assert routes[2].match.prefix == "/"
    assert [r.route.cluster for r in routes] == [V1, V1, V2]


def test_uri_regex_and_ignore_case() -> None:
    route = only_route(rule(HTTPMatchRequest(uri=StringMatch(REGEX, "/s/[0-9]+"))))
    assert route.match.safe_regex.regex == "/s/[0-9]+"
    route = only_route(rule(HTTPMatchRequest(uri=StringMatch(PREFIX, "/A"), ignore_uri_case=True)))
    assert route.match.HasField("case_sensitive") and not route.match.case_sensitive.value


def test_headers_pseudo_headers_and_inverted_headers() -> None:
    block = HTTPMatchRequest(
        headers={
            "x-user": StringMatch(EXACT, "jason"),
            "x-pre": StringMatch(PREFIX, "ab"),
            "x-re": StringMatch(REGEX, "a.c"),
            "x-any": StringMatch(PRESENT),
        },
        without_headers={"x-test": StringMatch(EXACT, "true")},
        method=StringMatch(EXACT, "GET"),
        authority=StringMatch(PREFIX, "attendees"),
        scheme=StringMatch(EXACT, "http"),
    )
    headers = {h.name: h for h in only_route(rule(block)).match.headers}
    assert headers[":method"].string_match.exact == "GET"
    assert headers[":authority"].string_match.prefix == "attendees"
    assert headers[":scheme"].string_match.exact == "http"
    assert headers["x-user"].string_match.exact == "jason"
    assert not headers["x-user"].string_match.ignore_case
    assert headers["x-pre"].string_match.prefix == "ab"
    assert headers["x-re"].string_match.safe_regex.regex == "a.c"
    assert headers["x-any"].present_match
    assert headers["x-test"].invert_match and headers["x-test"].string_match.exact == "true"
    assert not headers["x-user"].invert_match


def test_query_params() -> None:
    block = HTTPMatchRequest(
        query_params={"q": StringMatch(EXACT, "1"), "debug": StringMatch(PRESENT)}
    )
    params = {q.name: q for q in only_route(rule(block)).match.query_parameters}
    assert params["q"].string_match.exact == "1"
    assert params["debug"].present_match


def test_rules_for_another_port_are_left_out() -> None:
    rules = (
        rule(HTTPMatchRequest(uri=StringMatch(PREFIX, "/x"), port=80), name="on-80"),
        rule(HTTPMatchRequest(uri=StringMatch(PREFIX, "/y")), name="any-port"),
    )
    mesh = config(vs(*rules, hosts=("sessions",), name="sessions"))
    names_80 = [r.name for r in routes_of(mesh, "sessions:80")]
    names_8080 = [r.name for r in routes_of(mesh, "sessions:8080")]
    assert names_80 == ["on-80", "any-port"]
    assert names_8080 == ["any-port"]


def test_virtual_service_for_other_hosts_leaves_defaults() -> None:
    (route,) = routes_of(config(vs(rule(), hosts=("sessions",))))
    assert route.name == "default"


# --- destinations ----------------------------------------------------------


def test_weighted_destinations_with_header_operations() -> None:
    v2 = HTTPRouteDestination(
        Destination("attendees", "v2"),
        weight=99,
        headers=Headers(request=HeaderOperations(set={"x-v": "2"})),
    )
    route = only_route(rule(route=(to("attendees", "v1", weight=1), v2)))
    clusters = route.route.weighted_clusters.clusters
    assert [(c.name, c.weight.value) for c in clusters] == [(V1, 1), (V2, 99)]
    assert clusters[1].request_headers_to_add[0].header.key == "x-v"


def test_zero_weight_is_dropped_and_one_left_is_a_plain_cluster() -> None:
    route = only_route(rule(route=(to("attendees", "v1", weight=100), to("attendees", "v2"))))
    assert route.route.cluster == V1


def test_destination_port_defaults() -> None:
    # sessions has ports 80 and 8080: a route on attendees:8080 to sessions uses 8080
    route = only_route(rule(route=(to("sessions"),)))
    assert route.route.cluster == "outbound|8080||sessions"
    route = only_route(rule(route=(to("sessions", port=80),)))
    assert route.route.cluster == "outbound|80||sessions"
    mesh = config(
        vs(rule(route=(to("other"),))),
        entries=(entry("attendees", 8080), entry("other", 9000)),
    )
    assert routes_of(mesh)[0].route.cluster == "outbound|9000||other"


def test_destination_host_with_several_other_ports_goes_to_the_routed_port() -> None:
    # Istio's GetDestinationCluster: no port, several ports -> the routed (listener) port.
    mesh = config(
        vs(rule(route=(to("other"),))),
        entries=(entry("attendees", 8080), entry("other", 9000, 9001)),
    )
    assert routes_of(mesh)[0].route.cluster == "outbound|8080||other"
    (problem,) = ambiguous_destinations(mesh, ())
    assert problem == (
        "VirtualService default/attendees: http[0].route[0].destination: host 'other' has "
        "ports 9000, 9001 and none is the routed port 8080; name one with destination.port"
    )
    assert ambiguous_destinations(config(vs(rule(route=(to("sessions"),)))), ()) == ()


def test_rule_needs_exactly_one_action() -> None:
    with pytest.raises(TranslationError, match=r"http\[0\]: exactly one of"):
        resources(config(vs(rule(redirect=HTTPRedirect(uri="/x")))))


# --- redirect / direct response / rewrite ----------------------------------------


def test_redirect() -> None:
    redirect = HTTPRedirect(uri="/new", authority="example.com", scheme="https", redirect_code=308)
    route = only_route(rule(route=(), redirect=redirect))
    action = route.redirect
    assert action.path_redirect == "/new"
    assert action.host_redirect == "example.com"
    assert action.scheme_redirect == "https"
    assert action.response_code == rc.RedirectAction.PERMANENT_REDIRECT
    route = only_route(rule(route=(), redirect=HTTPRedirect(port=9999)))
    assert route.redirect.port_redirect == 9999
    assert route.redirect.response_code == rc.RedirectAction.MOVED_PERMANENTLY
    derived = HTTPRedirect(derive_port=RedirectPortPolicy.FROM_REQUEST_PORT)
    assert only_route(rule(route=(), redirect=derived)).redirect.port_redirect == 8080
    with pytest.raises(TranslationError, match="redirectCode: 300"):
        only_route(rule(route=(), redirect=HTTPRedirect(redirect_code=300)))


def test_direct_response() -> None:
    route = only_route(rule(route=(), direct_response=HTTPDirectResponse(503, b"down")))
    assert route.direct_response.status == 503
    assert route.direct_response.body.inline_string == "down"
    route = only_route(rule(route=(), direct_response=HTTPDirectResponse(200, b"\xff\x00")))
    assert route.direct_response.body.inline_bytes == b"\xff\x00"


def test_rewrite_uri_after_prefix_is_prefix_rewrite_else_whole_path() -> None:
    rewrite = HTTPRewrite(uri="/v2/", authority="new-host")
    route = only_route(rule(HTTPMatchRequest(uri=StringMatch(PREFIX, "/v1/")), rewrite=rewrite))
    assert route.route.prefix_rewrite == "/v2/"
    assert route.route.host_rewrite_literal == "new-host"
    route = only_route(rule(HTTPMatchRequest(uri=StringMatch(EXACT, "/a")), rewrite=rewrite))
    assert route.route.regex_rewrite.pattern.regex == "^.*$"
    assert route.route.regex_rewrite.substitution == "/v2/"
    regex = HTTPRewrite(uri_regex_rewrite=RegexRewrite("^/s/(.*)$", "/sessions/\\1"))
    route = only_route(rule(rewrite=regex))
    assert route.route.regex_rewrite.pattern.regex == "^/s/(.*)$"
    assert route.route.regex_rewrite.substitution == "/sessions/\\1"


# --- timeout, retries, hedging, mirrors ------------------------------------------


def test_timeout_caps_grpc_deadlines_too() -> None:
    route = only_route(rule(timeout_s=1.5))
    assert route.route.timeout.ToMilliseconds() == 1500
    assert route.route.max_stream_duration.grpc_timeout_header_max.ToMilliseconds() == 1500
    route = only_route(rule())
    assert route.route.HasField("timeout") and route.route.timeout.ToSeconds() == 0


def test_istio_default_retry_policy_without_retries() -> None:
    policy = only_route(rule()).route.retry_policy
    assert policy.num_retries.value == 2
    assert (
        policy.retry_on
        == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    )
    assert list(policy.retriable_status_codes) == [503]
    assert policy.retry_host_predicate[0].name == "envoy.retry_host_predicates.previous_hosts"
    assert policy.host_selection_retry_max_attempts == 5
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 25
    assert policy.retry_back_off.max_interval.ToMilliseconds() == 250


def test_retries() -> None:
    retries = HTTPRetry(
        attempts=3,
        per_try_timeout_s=0.25,
        retry_on=("5xx", "deadline-exceeded", "429", "reset"),
        retry_remote_localities=True,
    )
    policy = only_route(rule(retries=retries)).route.retry_policy
    assert policy.num_retries.value == 3
    assert policy.per_try_timeout.ToMilliseconds() == 250
    assert policy.retry_on == "5xx,deadline-exceeded,reset,retriable-status-codes"
    assert list(policy.retriable_status_codes) == [429]
    priorities = previous_priorities_pb2.PreviousPrioritiesConfig()
    assert policy.retry_priority.typed_config.Unpack(priorities)
    assert priorities.update_frequency == 4


def test_zero_attempts_means_no_retry_policy() -> None:
    route = only_route(rule(retries=HTTPRetry(attempts=0)))
    assert not route.route.HasField("retry_policy")


def test_hedge_extension() -> None:
    extensions = VirtualServiceExtensions(hedge=HedgePolicy(hedge_on_per_try_timeout=True))
    route = only_route(rule(), extensions=extensions)
    assert route.route.hedge_policy.hedge_on_per_try_timeout


def test_mirrors_per_million() -> None:
    mirrors = (
        HTTPMirror(Destination("attendees", "v2"), percentage=0.5),
        HTTPMirror(Destination("sessions"), percentage=100.0),
    )
    route = only_route(rule(mirrors=mirrors))
    first, second = route.route.request_mirror_policies
    assert first.cluster == V2
    fraction = first.runtime_fraction.default_value
    assert (fraction.numerator, fraction.denominator) == (
        5000,
        percent_pb2.FractionalPercent.MILLION,
    )
    assert second.cluster == "outbound|8080||sessions"
    assert second.runtime_fraction.default_value.numerator == 1_000_000


# --- headers, name ---------------------------------------------------------------


def test_rule_headers() -> None:
    headers = Headers(
        request=HeaderOperations(set={"x-a": "1"}, add={"x-b": "2"}, remove=("x-c",)),
        response=HeaderOperations(set={"x-d": "3"}, remove=("server",)),
    )
    route = only_route(rule(headers=headers))
    added = {(o.header.key, o.header.value, o.append_action) for o in route.request_headers_to_add}
    assert added == {
        ("x-a", "1", base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-b", "2", base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
    }
    assert list(route.request_headers_to_remove) == ["x-c"]
    assert route.response_headers_to_add[0].header.key == "x-d"
    assert list(route.response_headers_to_remove) == ["server"]
    with pytest.raises(TranslationError, match="':authority' cannot be changed"):
        only_route(rule(headers=Headers(request=HeaderOperations(set={":authority": "x"}))))


# --- faults and rate limits -------------------------------------------------------


def test_fault_is_per_route_and_adds_the_filter_before_the_router() -> None:
    fault = HTTPFaultInjection(
        delay=FaultDelay(fixed_delay_s=0.2, percentage=12.5),
        abort=FaultAbort(percentage=1.0, grpc_status="UNAVAILABLE"),
    )
    faulty = rule(HTTPMatchRequest(headers={"x-testing": StringMatch(EXACT, "true")}), fault=fault)
    mesh = config(vs(faulty, rule()))
    listeners, _ = resources(mesh)
    first, second = routes_of(mesh)
    config_ = fault_pb2.HTTPFault()
    assert first.typed_per_filter_config[FAULT_FILTER_NAME].Unpack(config_)
    assert config_.delay.fixed_delay.ToMilliseconds() == 200
    assert config_.delay.percentage.numerator == 125_000
    assert config_.abort.grpc_status == 14
    assert config_.abort.percentage.numerator == 10_000
    assert FAULT_FILTER_NAME not in second.typed_per_filter_config
    names = [f.name for f in manager_of(listeners["attendees:8080"]).http_filters]
    assert names == [FAULT_FILTER_NAME, ROUTER_FILTER_NAME]
    untouched = [f.name for f in manager_of(listeners["sessions:8080"]).http_filters]
    assert untouched == [ROUTER_FILTER_NAME]


def test_http_abort_status() -> None:
    fault = HTTPFaultInjection(abort=FaultAbort(http_status=503))
    config_ = fault_pb2.HTTPFault()
    only_route(rule(fault=fault)).typed_per_filter_config[FAULT_FILTER_NAME].Unpack(config_)
    assert config_.abort.http_status == 503
    assert config_.abort.percentage.numerator == 1_000_000


def test_fault_headers_extension_on_the_listener() -> None:
    extensions = VirtualServiceExtensions(fault_headers_enabled=True, max_active_faults=7)
    listeners, _ = resources(config(vs(rule(), extensions=extensions)))
    (fault_filter, _router) = manager_of(listeners["attendees:8080"]).http_filters
    config_ = fault_pb2.HTTPFault()
    assert fault_filter.typed_config.Unpack(config_)
    assert config_.delay.HasField("header_delay")
    assert config_.abort.HasField("header_abort")
    assert config_.max_active_faults.value == 7


def test_local_rate_limit_filter_is_optional() -> None:
    limit = LocalRateLimit(max_tokens=10, tokens_per_fill=5, fill_interval_s=1.0)
    extensions = VirtualServiceExtensions(local_rate_limit=limit)
    listeners, _ = resources(config(vs(rule(), extensions=extensions)))
    rate_filter, router = manager_of(listeners["attendees:8080"]).http_filters
    assert rate_filter.name == LOCAL_RATE_LIMIT_FILTER_NAME and rate_filter.is_optional
    assert router.name == ROUTER_FILTER_NAME
    config_ = local_rate_limit_pb2.LocalRateLimit()
    assert rate_filter.typed_config.Unpack(config_)
    assert config_.token_bucket.max_tokens == 10
    assert config_.token_bucket.tokens_per_fill.value == 5
    assert config_.token_bucket.fill_interval.ToSeconds() == 1
    assert config_.filter_enabled.default_value.numerator == 100
    assert config_.filter_enforced.default_value.numerator == 100
    assert config_.status.code == 429


def test_bad_values_name_the_field() -> None:
    with pytest.raises(TranslationError, match=r"http\[0\]\.mirrors\[0\]\.percentage"):
        only_route(rule(mirrors=(HTTPMirror(Destination("attendees"), percentage=120),)))
    with pytest.raises(TranslationError, match="grpcStatus: 'NOPE'"):
        only_route(rule(fault=HTTPFaultInjection(abort=FaultAbort(grpc_status="NOPE"))))
    with pytest.raises(TranslationError, match=r"retryOn: 700"):
        only_route(rule(retries=HTTPRetry(attempts=1, retry_on=("700",))))


def test_output_is_deterministic() -> None:
    fault = HTTPFaultInjection(abort=FaultAbort(http_status=500))
    block = HTTPMatchRequest(headers={"b": StringMatch(EXACT, "1"), "a": StringMatch(PRESENT)})
    mesh = config(vs(rule(block, fault=fault, mirrors=(HTTPMirror(Destination("sessions")),))))
    first = resources(mesh)
    second = resources(mesh)
    for a, b in zip(first, second, strict=True):
        assert {k: v.SerializeToString(deterministic=True) for k, v in a.items()} == {
            k: v.SerializeToString(deterministic=True) for k, v in b.items()
        }


# --- consistent hash keys from DestinationRules ----------------------------------


def _hashing(host: str, subset: str = "", **key: object) -> DestinationRule:
    settings = LoadBalancerSettings(consistent_hash=ConsistentHash(**key))  # type: ignore[arg-type]
    if subset:
        return DestinationRule(
            name=host,
            namespace="default",
            host=host,
            subsets=(Subset(subset, {"version": subset}, TrafficPolicy(load_balancer=settings)),),
        )
    return DestinationRule(
        name=host,
        namespace="default",
        host=host,
        traffic_policy=TrafficPolicy(load_balancer=settings),
    )


def _with_rules(
    *rules: DestinationRule, virtual_services: tuple[VirtualService, ...] = ()
) -> MeshConfig:
    return replace(config(*virtual_services), destination_rules=rules)


def test_hash_policy_on_default_route() -> None:
    (route,) = routes_of(_with_rules(_hashing("attendees", http_header_name="x-user")))
    (policy,) = route.route.hash_policy
    assert policy.header.header_name == "x-user"


def test_hash_policy_kinds() -> None:
    cookie = HashCookie(name="session", path="/", ttl_s=60)
    (route,) = routes_of(_with_rules(_hashing("attendees", http_cookie=cookie)))
    (policy,) = route.route.hash_policy
    assert (policy.cookie.name, policy.cookie.path, policy.cookie.ttl.ToSeconds()) == (
        "session",
        "/",
        60,
    )
    (route,) = routes_of(_with_rules(_hashing("attendees", use_source_ip=True)))
    assert route.route.hash_policy[0].connection_properties.source_ip
    (route,) = routes_of(_with_rules(_hashing("attendees", http_query_parameter_name="u")))
    assert route.route.hash_policy[0].query_parameter.name == "u"


def test_hash_policy_follows_the_destination_subset() -> None:
    mesh = _with_rules(
        _hashing("attendees", "v1", http_header_name="x-user"),
        virtual_services=(vs(rule()),),
    )
    (route,) = routes_of(mesh)
    assert route.route.cluster == V1
    assert route.route.hash_policy[0].header.header_name == "x-user"
    other = _with_rules(
        _hashing("attendees", "v2", http_header_name="x-user"), virtual_services=(vs(rule()),)
    )
    assert not routes_of(other)[0].route.hash_policy


def test_destinations_hashing_differently_is_an_error() -> None:
    mesh = _with_rules(
        _hashing("attendees", http_header_name="x-user"),
        _hashing("sessions", http_header_name="x-other"),
        virtual_services=(vs(rule(route=(to("attendees", weight=50), to("sessions", weight=50)))),),
    )
    with pytest.raises(TranslationError, match="different consistentHash keys"):
        resources(mesh)


# --- meshlib's decoder --------------------------------------------------------


def test_meshlib_decoder_accepts_every_feature() -> None:
    mesh = every_feature(Backend("a", 1001), Backend("b", 1002))
    listeners, tables = resources(mesh)
    for table in tables.values():
        decode_route_configuration(table)
    for listener in listeners.values():
        decode_listener(listener)


def test_empty_prefix_means_present() -> None:
    block = HTTPMatchRequest(
        headers={"x-h": StringMatch(PREFIX, "")}, query_params={"q": StringMatch(PREFIX, "")}
    )
    match = only_route(rule(block)).match
    assert match.headers[0].present_match
    assert match.query_parameters[0].present_match
    with pytest.raises(TranslationError, match=r"headers\.x-r: a regex match needs a pattern"):
        only_route(rule(HTTPMatchRequest(headers={"x-r": StringMatch(REGEX, "")})))


def test_bad_rate_limit_names_the_virtual_service() -> None:
    limit = LocalRateLimit(max_tokens=0, tokens_per_fill=1, fill_interval_s=1)
    mesh = config(vs(rule(), extensions=VirtualServiceExtensions(local_rate_limit=limit)))
    with pytest.raises(TranslationError, match="VirtualService default/attendees: local rate"):
        resources(mesh)
