"""RetryPolicy and HedgePolicy on routes and virtual hosts (the route's wins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.omit_canary_hosts.v3 import omit_canary_hosts_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as pp_pb2,
)

from meshlib.errors import XdsValidationError
from meshlib.xds_client import ROUTE_CONFIG
from meshlib.xds_client.resources import (
    HeaderMatcher,
    HeaderMatchKind,
    HedgePolicy,
    RateLimitedRetryBackOff,
    ResetHeader,
    ResetHeaderFormat,
    RetryBackOff,
    RetryOn,
    RetryPolicy,
    RouteConfigResource,
)
from tests.xds_client import xds_builders as b
from tests.xds_client.change_steps import all_of

WHERE = 'RouteConfiguration "rc": virtual_hosts[0] "vh".routes[0].route.retry_policy'


def decode(message: Any) -> RouteConfigResource:
    return ROUTE_CONFIG.decode(b.pack(message))


def with_retry(change: Callable[[Any], object]) -> Any:
    config = b.route_config()
    policy = config.virtual_hosts[0].routes[0].route.retry_policy
    policy.SetInParent()
    change(policy)
    return config


def action_of(config: RouteConfigResource, index: int = 0) -> Any:
    return config.virtual_hosts[0].routes[index].action


def test_full_retry_policy() -> None:
    def change(p: Any) -> None:
        p.retry_on = "5xx, gateway-error,reset,connect-failure,retriable-4xx,refused-stream,"
        p.retry_on += "retriable-status-codes,retriable-headers,unavailable,x-unknown"
        p.num_retries.value = 3
        p.per_try_timeout.nanos = 250_000_000
        p.per_try_idle_timeout.seconds = 2
        p.retry_host_predicate.add(
            name="envoy.retry_host_predicates.previous_hosts",
            typed_config=b.pack(previous_hosts_pb2.PreviousHostsPredicate()),
        )
        p.host_selection_retry_max_attempts = 5
        p.retriable_status_codes.extend([503, 429])
        p.retriable_headers.add(name="x-retry", present_match=True)
        p.retriable_request_headers.add(name=":method", exact_match="GET")
        p.retry_back_off.base_interval.nanos = 100_000_000
        p.retry_back_off.max_interval.seconds = 2
        reset = p.rate_limited_retry_back_off
        reset.reset_headers.add(name="Retry-After")
        reset.reset_headers.add(name="x-ratelimit-reset", format=rc.RetryPolicy.UNIX_TIMESTAMP)
        reset.max_interval.seconds = 30
        p.retry_priority.name = "envoy.retry_priorities.previous_priorities"
        p.retry_priority.typed_config.CopyFrom(
            b.pack(pp_pb2.PreviousPrioritiesConfig(update_frequency=2))
        )

    policy = action_of(decode(with_retry(change))).retry_policy
    assert policy == RetryPolicy(
        retry_on=frozenset(
            {
                RetryOn.FIVE_XX,
                RetryOn.GATEWAY_ERROR,
                RetryOn.RESET,
                RetryOn.CONNECT_FAILURE,
                RetryOn.RETRIABLE_4XX,
                RetryOn.REFUSED_STREAM,
                RetryOn.RETRIABLE_STATUS_CODES,
                RetryOn.RETRIABLE_HEADERS,
                RetryOn.UNAVAILABLE,
            }
        ),
        unknown_retry_on=("x-unknown",),
        num_retries=3,
        per_try_timeout_s=0.25,
        per_try_idle_timeout_s=2.0,
        retry_previous_hosts=True,
        host_selection_retry_max_attempts=5,
        retriable_status_codes=(503, 429),
        retriable_headers=(HeaderMatcher("x-retry", HeaderMatchKind.PRESENT),),
        retriable_request_headers=(HeaderMatcher(":method", HeaderMatchKind.EXACT, "GET"),),
        back_off=RetryBackOff(0.1, 2.0),
        rate_limited_back_off=RateLimitedRetryBackOff(
            (
                ResetHeader("retry-after"),
                ResetHeader("x-ratelimit-reset", ResetHeaderFormat.UNIX_TIMESTAMP),
            ),
            30.0,
        ),
        previous_priorities_update_frequency=2,
    )


def test_retry_defaults() -> None:
    policy = action_of(decode(with_retry(lambda p: setattr(p, "retry_on", "5xx")))).retry_policy
    assert policy == RetryPolicy(retry_on=frozenset({RetryOn.FIVE_XX}))
    assert policy.num_retries == 1
    assert policy.back_off == RetryBackOff(0.025, 0.25)
    only_base = action_of(
        decode(with_retry(lambda p: setattr(p.retry_back_off.base_interval, "seconds", 1)))
    ).retry_policy
    assert only_base.back_off == RetryBackOff(1.0, 10.0)
    no_max = action_of(
        decode(with_retry(lambda p: p.rate_limited_retry_back_off.reset_headers.add(name="a")))
    ).retry_policy
    assert no_max.rate_limited_back_off == RateLimitedRetryBackOff((ResetHeader("a"),), 300.0)


def test_virtual_host_policies_apply_unless_the_route_sets_its_own() -> None:
    config = b.route_config()
    vh = config.virtual_hosts[0]
    vh.retry_policy.retry_on = "5xx"
    vh.retry_policy.num_retries.value = 2
    vh.hedge_policy.hedge_on_per_try_timeout = True
    vh.routes.add(name="own", match={"prefix": "/own"}, route={"cluster": "c1"})
    vh.routes[1].route.retry_policy.retry_on = "reset"
    vh.routes[1].route.hedge_policy.initial_requests.value = 2
    got = decode(config)
    vh_retry = RetryPolicy(retry_on=frozenset({RetryOn.FIVE_XX}), num_retries=2)
    assert got.virtual_hosts[0].retry_policy == vh_retry
    assert got.virtual_hosts[0].hedge_policy == HedgePolicy(hedge_on_per_try_timeout=True)
    assert action_of(got, 0).retry_policy == vh_retry
    assert action_of(got, 0).hedge_policy == HedgePolicy(hedge_on_per_try_timeout=True)
    assert action_of(got, 1).retry_policy == RetryPolicy(retry_on=frozenset({RetryOn.RESET}))
    assert action_of(got, 1).hedge_policy == HedgePolicy(initial_requests=2)


def test_hedge_policy() -> None:
    config = b.route_config()
    hedge = config.virtual_hosts[0].routes[0].route.hedge_policy
    hedge.initial_requests.value = 3
    hedge.additional_request_chance.numerator = 5
    hedge.additional_request_chance.denominator = 1  # TEN_THOUSAND
    got = action_of(decode(config)).hedge_policy
    assert got == HedgePolicy(3, 500, False)
    assert action_of(decode(b.route_config())).hedge_policy is None
    assert action_of(decode(b.route_config())).retry_policy is None


INVALID: list[tuple[str, Callable[[Any], object], str]] = [
    (
        "zero base interval",
        lambda p: p.retry_back_off.max_interval.SetInParent(),
        f"{WHERE}.retry_back_off.base_interval: required",
    ),
    (
        "negative base interval",
        lambda p: setattr(p.retry_back_off.base_interval, "seconds", -1),
        f"{WHERE}.retry_back_off.base_interval: invalid duration",
    ),
    (
        "max below base",
        all_of(
            lambda p: setattr(p.retry_back_off.base_interval, "seconds", 2),
            lambda p: setattr(p.retry_back_off.max_interval, "seconds", 1),
        ),
        f"{WHERE}.retry_back_off.max_interval: must not be less than base_interval",
    ),
    (
        "status code",
        lambda p: p.retriable_status_codes.append(42),
        f"{WHERE}.retriable_status_codes[0]: 42 is not an HTTP status",
    ),
    (
        "unsupported host predicate",
        lambda p: p.retry_host_predicate.add(
            name="canary", typed_config=b.pack(omit_canary_hosts_pb2.OmitCanaryHostsPredicate())
        ),
        f"{WHERE}.retry_host_predicate[0]: retry host predicate type.googleapis.com/envoy."
        "extensions.retry.host.omit_canary_hosts.v3.OmitCanaryHostsPredicate is not supported",
    ),
    (
        "bad previous priorities",
        lambda p: p.retry_priority.typed_config.CopyFrom(
            b.pack(pp_pb2.PreviousPrioritiesConfig(update_frequency=0))
        ),
        f"{WHERE}.retry_priority.update_frequency: must be greater than 0",
    ),
    (
        "unknown retry priority",
        lambda p: p.retry_priority.typed_config.CopyFrom(
            b.pack(previous_hosts_pb2.PreviousHostsPredicate())
        ),
        f"{WHERE}.retry_priority: expected type.googleapis.com/envoy.extensions.retry.priority.",
    ),
    (
        "empty reset headers",
        lambda p: p.rate_limited_retry_back_off.SetInParent(),
        f"{WHERE}.rate_limited_retry_back_off.reset_headers: must not be empty",
    ),
    (
        "reset header name",
        lambda p: p.rate_limited_retry_back_off.reset_headers.add(name="bad name"),
        f"{WHERE}.rate_limited_retry_back_off.reset_headers[0].name: 'bad name' is not a valid",
    ),
    (
        "reset max interval",
        all_of(
            lambda p: p.rate_limited_retry_back_off.reset_headers.add(name="a"),
            lambda p: p.rate_limited_retry_back_off.max_interval.SetInParent(),
        ),
        f"{WHERE}.rate_limited_retry_back_off.max_interval: must be greater than 0",
    ),
    (
        "bad retriable header",
        lambda p: p.retriable_headers.add(name="x"),
        f"{WHERE}.retriable_headers[0]: header match specifier required",
    ),
    (
        "negative host selection attempts",
        lambda p: setattr(p, "host_selection_retry_max_attempts", -1),
        f"{WHERE}.host_selection_retry_max_attempts: must not be negative",
    ),
    (
        "options predicates",
        lambda p: p.retry_options_predicates.add(name="x"),
        f"{WHERE}.retry_options_predicates: not supported",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_retry_policy(change: Callable[[Any], object], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(with_retry(change))
    assert expected in str(info.value)


def test_invalid_hedge_and_vhost_retry() -> None:
    config = b.route_config()
    config.virtual_hosts[0].hedge_policy.initial_requests.SetInParent()  # value 0
    with pytest.raises(XdsValidationError, match=r'"vh".hedge_policy.initial_requests: must be'):
        decode(config)
    config = b.route_config()
    config.virtual_hosts[0].retry_policy.retriable_status_codes.append(1000)
    with pytest.raises(XdsValidationError, match=r'"vh".retry_policy.retriable_status_codes\[0\]'):
        decode(config)
