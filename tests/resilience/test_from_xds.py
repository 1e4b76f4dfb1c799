"""The mapping from decoded xDS models to resilience policies (pure, no I/O)."""

from __future__ import annotations

import pytest

from meshlib.errors import RateLimitedError
from meshlib.resilience.backoff import ResetFormat
from meshlib.resilience.breaker import BreakerRegistry
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.degraded import DegradedServices
from meshlib.resilience.fault import FaultInjector
from meshlib.resilience.route_resilience import ResilienceCompiler, apply_stages
from meshlib.resilience.xds_cluster import (
    ClusterResilienceRegistry,
    cluster_thresholds,
    service_of_cluster,
)
from meshlib.resilience.xds_filters import (
    LocalRateLimiter,
    effective_filter_configs,
    fault_policy,
    rate_limit,
)
from meshlib.resilience.xds_route import (
    ENVOY_DEFAULT_ROUTE_TIMEOUT_S,
    retry_policy,
    route_retry,
    route_timeouts,
)
from meshlib.xds_client import resources as xds
from meshlib.xds_client.frozen_map import FrozenMap

CLUSTER = "outbound|8080||sessions"
FAULT = "envoy.filters.http.fault"
LIMIT = "envoy.filters.http.local_ratelimit"
ROUTER = xds.HttpFilter("envoy.filters.http.router", xds.RouterConfig())
MILLION = 1_000_000


def _header(name: str, value: str) -> xds.HeaderMatcher:
    return xds.HeaderMatcher(name=name, kind=xds.HeaderMatchKind.EXACT, value=value)


def _action(**fields: object) -> xds.RouteAction:
    return xds.RouteAction(cluster=CLUSTER, **fields)  # type: ignore[arg-type]


# --- retry policy -------------------------------------------------------------------


def test_retry_on_names_codes_and_headers_become_conditions() -> None:
    policy = retry_policy(
        xds.RetryPolicy(
            retry_on=frozenset(
                {xds.RetryOn.RETRIABLE_STATUS_CODES, xds.RetryOn.UNAVAILABLE,
                 xds.RetryOn.RETRIABLE_HEADERS, xds.RetryOn.CONNECT_FAILURE}
            ),
            retriable_status_codes=(418,),
            retriable_headers=(_header("x-retry-me", "yes"),),
            num_retries=4,
            per_try_timeout_s=0.25,
        )
    )  # fmt: skip
    assert policy.num_retries == 4
    assert policy.per_try_timeout_s == 0.25
    assert policy.retry_reason(Outcome(status=418)) == "retriable-status-codes"
    assert policy.retry_reason(Outcome(status=503)) is None
    assert policy.retry_reason(Outcome(grpc_status=14)) == "unavailable"
    assert policy.retry_reason(Outcome(status=200, headers={"x-retry-me": "yes"})) is not None
    assert policy.retry_reason(Outcome(failure=FailureKind.CONNECT_FAILURE)) == "connect-failure"
    assert policy.retry_reason(Outcome(failure=FailureKind.RESET)) is None


def test_status_codes_without_the_condition_are_not_retried() -> None:
    policy = retry_policy(
        xds.RetryPolicy(retry_on=frozenset({xds.RetryOn.RESET}), retriable_status_codes=(503,))
    )
    assert policy.retry_reason(Outcome(status=503)) is None


def test_back_off_rate_limited_back_off_previous_hosts_and_hedging() -> None:
    source = xds.RetryPolicy(
        retry_on=frozenset({xds.RetryOn.FIVE_XX}),
        retry_previous_hosts=True,
        back_off=xds.RetryBackOff(base_interval_s=0.1, max_interval_s=0.5),
        rate_limited_back_off=xds.RateLimitedRetryBackOff(
            reset_headers=(
                xds.ResetHeader("Retry-After"),
                xds.ResetHeader("x-ratelimit-reset", xds.ResetHeaderFormat.UNIX_TIMESTAMP),
            ),
            max_interval_s=30.0,
        ),
    )
    policy = retry_policy(source, xds.HedgePolicy(hedge_on_per_try_timeout=True))
    assert (policy.back_off.base_interval_s, policy.back_off.cap_s) == (0.1, 0.5)
    assert policy.retry_previous_hosts is True
    assert policy.hedge_on_per_try_timeout is True
    limited = policy.rate_limited_back_off
    assert limited is not None and limited.max_interval_s == 30.0
    assert [(h.name, h.format) for h in limited.reset_headers] == [
        ("retry-after", ResetFormat.SECONDS),
        ("x-ratelimit-reset", ResetFormat.UNIX_TIMESTAMP),
    ]
    assert limited.interval({"retry-after": "2"}, wall_clock=lambda: 0.0) == 2.0
    assert retry_policy(source).hedge_on_per_try_timeout is False
    assert retry_policy(replace_hosts(source)).retry_previous_hosts is False


def replace_hosts(policy: xds.RetryPolicy) -> xds.RetryPolicy:
    from dataclasses import replace

    return replace(policy, retry_previous_hosts=False)


def test_route_without_retry_policy_has_no_retry() -> None:
    assert route_retry(_action()) is None


def test_retriable_request_headers_gate_retries_and_methods_opt_in() -> None:
    plain = route_retry(_action(retry_policy=xds.RetryPolicy()))
    assert plain is not None and plain.allows({})
    assert plain.idempotent("GET") and plain.idempotent("PUT")
    assert not plain.idempotent("POST")

    gated = route_retry(
        _action(retry_policy=xds.RetryPolicy(retriable_request_headers=(_header("x-r", "1"),)))
    )
    assert gated is not None
    assert gated.allows({"x-r": "1"}) and not gated.allows({"x-r": "2"})
    assert not gated.idempotent("POST")

    by_method = route_retry(
        _action(
            retry_policy=xds.RetryPolicy(retriable_request_headers=(_header(":method", "POST"),))
        )
    )
    assert by_method is not None
    assert by_method.allows({}, "POST") and not by_method.allows({}, "GET")
    assert by_method.idempotent("POST")


# --- timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_timeout", "expected"),
    [(None, ENVOY_DEFAULT_ROUTE_TIMEOUT_S), (0.0, None), (2.5, 2.5)],
)
def test_http_timeout_follows_envoy(request_timeout: float | None, expected: float | None) -> None:
    assert route_timeouts(_action(request_timeout_s=request_timeout)).http_timeout_s == expected


def test_max_stream_duration_caps_http_and_grpc_reads_its_own_timeout() -> None:
    timeouts = route_timeouts(
        _action(
            request_timeout_s=0.0,
            timeout_s=3.0,
            max_stream_duration=xds.MaxStreamDuration(max_stream_duration_s=1.5),
            retry_policy=xds.RetryPolicy(per_try_idle_timeout_s=0.2),
        )
    )
    assert timeouts.http_timeout_s == 1.5
    assert timeouts.grpc_max_timeout_s == 3.0
    assert timeouts.per_try_idle_timeout_s == 0.2
    assert route_timeouts(_action(request_timeout_s=0.0)).grpc_max_timeout_s is None


# --- filters ------------------------------------------------------------------------

ABORT_ALL = xds.HTTPFault(abort=xds.FaultAbort(http_status=503, per_million=MILLION))
DELAY_HALF = xds.HTTPFault(delay=xds.FaultDelay(fixed_delay_s=0.1, per_million=MILLION // 2))
BUCKET = xds.LocalRateLimit(
    stat_prefix="s",
    token_bucket=xds.TokenBucket(max_tokens=2, fill_interval_s=60.0),
    filter_enabled_per_million=MILLION,
    filter_enforced_per_million=MILLION,
    response_headers_to_add=(xds.HeaderValueOption("x-limited", "1"),),
)


def _over(
    name: str, config: xds.HTTPFault | xds.LocalRateLimit | None, *, off: bool = False
) -> FrozenMap[str, xds.FilterOverride]:
    return FrozenMap({name: xds.FilterOverride(config=config, disabled=off)})


def test_listener_config_applies_unless_a_more_specific_level_replaces_it() -> None:
    filters = (xds.HttpFilter(FAULT, ABORT_ALL), ROUTER)
    assert [f.config for f in effective_filter_configs(filters, ())] == [ABORT_ALL]
    empty: FrozenMap[str, xds.FilterOverride] = FrozenMap()
    levels = (empty, _over(FAULT, DELAY_HALF), _over(FAULT, ABORT_ALL))
    found = effective_filter_configs(filters, levels)
    assert [(f.config, f.level) for f in found] == [(DELAY_HALF, 1)]
    assert effective_filter_configs(filters, (_over(FAULT, None, off=True),)) == ()


def test_a_filter_disabled_on_the_listener_runs_only_where_a_route_enables_it() -> None:
    filters = (xds.HttpFilter(FAULT, ABORT_ALL, disabled=True), ROUTER)
    assert effective_filter_configs(filters, ()) == ()
    found = effective_filter_configs(filters, (_over(FAULT, DELAY_HALF),))
    assert [f.config for f in found] == [DELAY_HALF]


def test_filters_keep_chain_order_and_ignore_the_router() -> None:
    filters = (xds.HttpFilter(LIMIT, BUCKET), xds.HttpFilter(FAULT, ABORT_ALL), ROUTER)
    assert [f.name for f in effective_filter_configs(filters, ())] == [LIMIT, FAULT]


def test_fault_policy_mapping() -> None:
    assert fault_policy(xds.HTTPFault()) is None
    assert fault_policy(xds.HTTPFault(abort=xds.FaultAbort(http_status=500))) is None  # 0%
    policy = fault_policy(
        xds.HTTPFault(
            delay=xds.FaultDelay(fixed_delay_s=None, per_million=MILLION),
            abort=xds.FaultAbort(grpc_status=14, per_million=MILLION),
            max_active_faults=2,
            headers=(_header("x-testing", "true"),),
        )
    )
    assert policy is not None and policy.delay is not None and policy.abort is not None
    assert policy.delay.fixed_delay_s is None  # header controlled
    assert policy.abort.grpc_status == 14
    assert policy.max_active_faults == 2
    assert policy.applies_to is not None
    assert policy.applies_to({"x-testing": "true"}) and not policy.applies_to({})
    injector = FaultInjector(policy)
    assert injector.decide({"x-testing": "true"}).abort is not None
    assert injector.decide({"x-testing": "false"}).abort is None
    delayed = injector.decide({"x-testing": "true", "x-envoy-fault-delay-request": "40"})
    assert delayed.delay_s == pytest.approx(0.04)


def test_rate_limit_mapping_enforced_and_shadow() -> None:
    assert rate_limit(xds.LocalRateLimit(stat_prefix="s"), name="n") is None
    limiter = rate_limit(BUCKET, name="svc:80")
    assert isinstance(limiter, LocalRateLimiter)
    limiter.check()
    limiter.check()
    with pytest.raises(RateLimitedError) as caught:
        limiter.check()
    assert caught.value.http_status == 429 and caught.value.grpc_status == 14
    assert caught.value.response_headers == (("x-limited", "1"),)

    from dataclasses import replace

    shadow = rate_limit(replace(BUCKET, filter_enforced_per_million=0), name="svc:80")
    assert shadow is not None
    for _ in range(5):
        shadow.check()
    assert shadow.shadow_passed == 3
    off = replace(BUCKET, filter_enabled_per_million=0)
    assert rate_limit(off, name="svc:80") is None
    exhausted = replace(BUCKET, rate_limited_as_resource_exhausted=True, status=503)
    strict = rate_limit(exhausted, name="x")
    assert strict is not None
    strict.bucket.try_acquire(2)
    with pytest.raises(RateLimitedError) as caught:
        strict.check()
    assert (caught.value.http_status, caught.value.grpc_status) == (503, 8)


# --- compiled routes ----------------------------------------------------------------


def _service(
    listener_filters: tuple[xds.HttpFilter, ...], route: xds.Route
) -> tuple[xds.ListenerResource, xds.RouteConfigResource]:
    vhost = xds.VirtualHost(name="vh", domains=("*",), routes=(route,))
    config = xds.RouteConfigResource(name="sessions:8080", virtual_hosts=(vhost,))
    listener = xds.ListenerResource(
        name="sessions:8080", route_config_name=None, route_config=config,
        filters=listener_filters,
    )  # fmt: skip
    return listener, config


MATCH_ALL = xds.RouteMatch(path_kind=xds.PathMatchKind.PREFIX, path="/")


def test_compiler_builds_stages_and_keeps_them_across_rebuilds() -> None:
    route = xds.Route(
        name="r",
        match=MATCH_ALL,
        action=_action(retry_policy=xds.RetryPolicy(num_retries=2)),
        typed_per_filter_config=_over(LIMIT, BUCKET),
    )
    filters = (xds.HttpFilter(LIMIT, xds.LocalRateLimit(stat_prefix="l")), ROUTER)
    compiler = ResilienceCompiler("sessions:8080")
    first = compiler.compile(*_service(filters, route)).for_route(route)
    assert first.retry is not None and first.retry.policy.num_retries == 2
    (stage,) = first.stages_for(CLUSTER)
    assert isinstance(stage, LocalRateLimiter)

    # An equal route in a rebuilt config (new objects) keeps the same bucket.
    again = xds.Route(name="r", match=MATCH_ALL, action=route.action,
                      typed_per_filter_config=_over(LIMIT, BUCKET))  # fmt: skip
    second = compiler.compile(*_service(filters, again)).for_route(again)
    assert second.stages_for(CLUSTER)[0] is stage
    with apply_stages(second.stages_for(CLUSTER), {}):
        pass
    with apply_stages(first.stages_for(CLUSTER), {}):
        pass
    with pytest.raises(RateLimitedError), apply_stages(second.stages_for(CLUSTER), {}):
        pass


def test_weighted_cluster_overrides_give_their_own_stages() -> None:
    other = "outbound|8080|v2|sessions"
    action = xds.RouteAction(
        weighted_clusters=(
            xds.ClusterWeight(name=CLUSTER, weight=50),
            xds.ClusterWeight(name=other, weight=50,
                              typed_per_filter_config=_over(FAULT, ABORT_ALL)),
        )
    )  # fmt: skip
    route = xds.Route(name="w", match=MATCH_ALL, action=action)
    filters = (xds.HttpFilter(FAULT, xds.HTTPFault()), ROUTER)
    compiled = ResilienceCompiler("sessions:8080").compile(*_service(filters, route))
    resilience = compiled.for_route(route)
    assert resilience.stages_for(CLUSTER) == ()
    (stage,) = resilience.stages_for(other)
    assert isinstance(stage, FaultInjector)


def test_unknown_route_gets_no_resilience() -> None:
    route = xds.Route(name="r", match=MATCH_ALL, action=_action())
    compiled = ResilienceCompiler("s:80").compile(*_service((ROUTER,), route))
    stranger = xds.Route(name="r", match=MATCH_ALL, action=_action())
    assert compiled.for_route(stranger).retry is None
    assert compiled.for_route(route).timeouts.http_timeout_s == ENVOY_DEFAULT_ROUTE_TIMEOUT_S


# --- clusters -----------------------------------------------------------------------


def test_thresholds_and_budget_defaults() -> None:
    default = cluster_thresholds(CLUSTER, xds.CircuitBreakerThresholds())
    assert default.requests.limit == 1024
    assert default.retries.budget_percent == 20.0 and default.retries.min_retry_concurrency == 3

    budget = cluster_thresholds(
        CLUSTER,
        xds.CircuitBreakerThresholds(
            max_requests=5,
            retry_budget=xds.RetryBudget(budget_percent=50.0, min_retry_concurrency=1),
        ),
    )
    assert budget.requests.limit == 5
    assert (budget.retries.budget_percent, budget.retries.min_retry_concurrency) == (50.0, 1)

    static = cluster_thresholds(CLUSTER, xds.CircuitBreakerThresholds(max_retries=7))
    assert static.retries.budget_percent is None and static.retries.max_retries == 7

    unlimited = cluster_thresholds(CLUSTER, xds.CircuitBreakerThresholds(max_retries=2**32 - 1))
    assert unlimited.retries.budget_percent == 20.0


def test_service_of_cluster() -> None:
    assert service_of_cluster(CLUSTER) == "sessions:8080"
    assert service_of_cluster("outbound|50051|v1|a.b") == "a.b:50051"
    assert service_of_cluster("plain") is None


def test_registry_keeps_runtime_while_config_is_equal_and_marks_degraded() -> None:
    degraded = DegradedServices()
    breakers = BreakerRegistry()
    registry = ClusterResilienceRegistry(breaker_registry=breakers, degraded=degraded)
    resource = xds.ClusterResource(name=CLUSTER, type=xds.ClusterType.EDS, eds_service_name=CLUSTER)
    first = registry.update(resource)
    assert registry.update(resource) is first
    assert not degraded.is_degraded("sessions:8080")

    from dataclasses import replace

    marked = registry.update(replace(resource, degraded=True))
    assert marked is first
    assert degraded.is_degraded("sessions:8080")
    changed = registry.update(
        replace(resource, circuit_breakers=xds.CircuitBreakerThresholds(max_requests=1))
    )
    assert changed is not first and changed.thresholds.requests.limit == 1
    assert not degraded.is_degraded("sessions:8080")

    assert changed.breaker() is None
    by_service = breakers.get("sessions:8080")
    assert changed.breaker() is by_service
    by_cluster = breakers.get(CLUSTER)
    assert changed.breaker() is by_cluster
    assert registry.get("outbound|1|x|unknown").thresholds.requests.limit == 1024
