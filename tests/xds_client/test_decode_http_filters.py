"""The listener's HTTP filter chain: router, fault and local rate limit configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import struct_pb2
from xds.type.v3 import typed_struct_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import LISTENER
from meshlib.xds_client.resources import (
    FaultAbort,
    FaultDelay,
    HeaderMatcher,
    HeaderMatchKind,
    HeaderValueOption,
    HTTPFault,
    HttpFilter,
    ListenerResource,
    LocalRateLimit,
    RouterConfig,
    TokenBucket,
)
from tests.xds_client import xds_builders as b

FILTERS = 'Listener "svc:80": api_listener.http_connection_manager.http_filters'


def decode_chain(*filters: Any) -> ListenerResource:
    manager = b.hcm()
    manager.ClearField("http_filters")
    manager.http_filters.extend(filters)
    manager.http_filters.append(b.router_filter())
    return LISTENER.decode(b.pack(b.listener(manager=manager)))


def flt(name: str, config: Any, **kwargs: Any) -> Any:
    return hcm_pb2.HttpFilter(name=name, typed_config=b.pack(config), **kwargs)


def test_fault_and_rate_limit_filters_in_order() -> None:
    fault = fault_pb2.HTTPFault(
        delay={"fixed_delay": {"seconds": 2}, "percentage": {"numerator": 10}},
        abort={"grpc_status": 14, "percentage": {"numerator": 5, "denominator": 2}},
        max_active_faults={"value": 4},
        headers=[{"name": "x-testing", "exact_match": "true"}],
    )
    limit = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="inbound",
        status={"code": 503},
        token_bucket={
            "max_tokens": 100,
            "tokens_per_fill": {"value": 10},
            "fill_interval": {"nanos": 500_000_000},
        },
        filter_enabled={"default_value": {"numerator": 100}},
        filter_enforced={"default_value": {"numerator": 50}},
        response_headers_to_add=[{"header": {"key": "x-limited", "value": "1"}}],
        enable_x_ratelimit_headers=1,
        rate_limited_as_resource_exhausted=True,
    )
    got = decode_chain(flt("fault", fault), flt("rl", limit, disabled=True))
    assert got.http_filters == ("fault", "rl", "envoy.filters.http.router")
    assert got.filters == (
        HttpFilter(
            "fault",
            HTTPFault(
                delay=FaultDelay(fixed_delay_s=2.0, per_million=100_000),
                abort=FaultAbort(grpc_status=14, per_million=5),
                max_active_faults=4,
                headers=(HeaderMatcher("x-testing", HeaderMatchKind.EXACT, "true"),),
            ),
        ),
        HttpFilter(
            "rl",
            LocalRateLimit(
                stat_prefix="inbound",
                token_bucket=TokenBucket(max_tokens=100, fill_interval_s=0.5, tokens_per_fill=10),
                status=503,
                filter_enabled_per_million=1_000_000,
                filter_enforced_per_million=500_000,
                response_headers_to_add=(HeaderValueOption("x-limited", "1"),),
                enable_x_ratelimit_headers=True,
                rate_limited_as_resource_exhausted=True,
            ),
            disabled=True,
        ),
        HttpFilter("envoy.filters.http.router", RouterConfig()),
    )


def test_header_controlled_faults_and_defaults() -> None:
    fault = fault_pb2.HTTPFault(delay={"header_delay": {}}, abort={"header_abort": {}})
    (got, _) = decode_chain(flt("fault", fault)).filters
    assert got.config == HTTPFault(
        delay=FaultDelay(fixed_delay_s=None, per_million=0),
        abort=FaultAbort(header_controlled=True, per_million=0),
    )
    assert isinstance(got.config, HTTPFault) and got.config.delay is not None
    assert got.config.delay.header_controlled
    (limit, _) = decode_chain(
        flt("rl", local_rate_limit_pb2.LocalRateLimit(stat_prefix="p"))
    ).filters
    assert limit.config == LocalRateLimit(stat_prefix="p")  # Envoy: enabled 0%, no bucket


def test_optional_unknown_skipped_and_typed_struct_read() -> None:
    value = struct_pb2.Struct()
    value.update({"abort": {"http_status": 418}})
    wrapped_fault = typed_struct_pb2.TypedStruct(
        type_url="type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        value=value,
    )
    got = decode_chain(
        flt("rbac", rbac_pb2.RBAC(), is_optional=True),
        hcm_pb2.HttpFilter(name="ts", typed_config=b.pack(wrapped_fault)),
    )
    assert got.http_filters == ("ts", "envoy.filters.http.router")
    assert got.filters[0].config == HTTPFault(abort=FaultAbort(http_status=418))


def test_router_options() -> None:
    manager = b.hcm()
    manager.http_filters[0].typed_config.CopyFrom(
        b.pack(router_pb2.Router(suppress_envoy_headers=True))
    )
    got = LISTENER.decode(b.pack(b.listener(manager=manager)))
    assert got.filters == (
        HttpFilter("envoy.filters.http.router", RouterConfig(suppress_envoy_headers=True)),
    )


def _fault(**fields: Any) -> Any:
    return flt("fault", fault_pb2.HTTPFault(**fields))


def _limit(**fields: Any) -> Any:
    return flt("rl", local_rate_limit_pb2.LocalRateLimit(**fields))


INVALID: list[tuple[str, Callable[[], Any], str]] = [
    (
        "fault downstream nodes",
        lambda: _fault(downstream_nodes=["n"]),
        f"{FILTERS}[0].typed_config.downstream_nodes: not supported",
    ),
    (
        "fault upstream cluster",
        lambda: _fault(upstream_cluster="c"),
        f"{FILTERS}[0].typed_config.upstream_cluster: not supported",
    ),
    (
        "fault response rate limit",
        lambda: _fault(response_rate_limit={"fixed_limit": {"limit_kbps": 1}}),
        f"{FILTERS}[0].typed_config.response_rate_limit: not supported",
    ),
    (
        "delay without kind",
        lambda: _fault(delay={"percentage": {"numerator": 1}}),
        f"{FILTERS}[0].typed_config.delay: fixed_delay or header_delay required",
    ),
    (
        "zero fixed delay",
        lambda: _fault(delay={"fixed_delay": {}}),
        f"{FILTERS}[0].typed_config.delay.fixed_delay: must be greater than 0",
    ),
    (
        "abort without kind",
        lambda: _fault(abort={"percentage": {"numerator": 1}}),
        f"{FILTERS}[0].typed_config.abort: http_status, grpc_status or header_abort required",
    ),
    (
        "abort http status",
        lambda: _fault(abort={"http_status": 100}),
        f"{FILTERS}[0].typed_config.abort.http_status: 100 is not in 200..599",
    ),
    (
        "abort grpc status",
        lambda: _fault(abort={"grpc_status": 17}),
        f"{FILTERS}[0].typed_config.abort.grpc_status: 17 is not a gRPC status code",
    ),
    (
        "fault header matcher",
        lambda: _fault(headers=[{"name": ""}]),
        f"{FILTERS}[0].typed_config.headers[0].name: required",
    ),
    (
        "rate limit without prefix",
        lambda: _limit(),
        f"{FILTERS}[0].typed_config.stat_prefix: required",
    ),
    (
        "rate limit status",
        lambda: _limit(stat_prefix="p", status={"code": 0}),
        f"{FILTERS}[0].typed_config.status.code: 0 is not an HTTP status",
    ),
    (
        "rate limit zero tokens",
        lambda: _limit(stat_prefix="p", token_bucket={"fill_interval": {"seconds": 1}}),
        f"{FILTERS}[0].typed_config.token_bucket.max_tokens: must be greater than 0",
    ),
    (
        "rate limit zero per fill",
        lambda: _limit(
            stat_prefix="p",
            token_bucket={
                "max_tokens": 1,
                "tokens_per_fill": {"value": 0},
                "fill_interval": {"seconds": 1},
            },
        ),
        f"{FILTERS}[0].typed_config.token_bucket.tokens_per_fill: must be greater than 0",
    ),
    (
        "rate limit no interval",
        lambda: _limit(stat_prefix="p", token_bucket={"max_tokens": 1}),
        f"{FILTERS}[0].typed_config.token_bucket.fill_interval: required",
    ),
    (
        "rate limit zero interval",
        lambda: _limit(stat_prefix="p", token_bucket={"max_tokens": 1, "fill_interval": {}}),
        f"{FILTERS}[0].typed_config.token_bucket.fill_interval: must be greater than 0",
    ),
    (
        "rate limit descriptors",
        lambda: _limit(stat_prefix="p", descriptors=[{"entries": [{"key": "k", "value": "v"}]}]),
        f"{FILTERS}[0].typed_config.descriptors: not supported",
    ),
    (
        "rate limit header",
        lambda: _limit(stat_prefix="p", response_headers_to_add=[{"header": {"key": "host"}}]),
        f"{FILTERS}[0].typed_config.response_headers_to_add[0].header.key: the host header",
    ),
    (
        "bad known config even when optional",
        lambda: flt("fault", fault_pb2.HTTPFault(abort={"http_status": 99}), is_optional=True),
        f"{FILTERS}[0].typed_config.abort.http_status: 99 is not in 200..599",
    ),
    (
        "typed struct of a known type with bad fields",
        lambda: hcm_pb2.HttpFilter(
            name="ts",
            typed_config=b.pack(
                typed_struct_pb2.TypedStruct(
                    type_url="type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                    value=struct_pb2.Struct(fields={"nope": struct_pb2.Value(number_value=1)}),
                )
            ),
        ),
        f"{FILTERS}[0].typed_config: TypedStruct is not a valid type.googleapis.com/envoy."
        "extensions.filters.http.fault.v3.HTTPFault",
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_filters(build: Callable[[], Any], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode_chain(build())
    assert expected in str(info.value)


def test_router_cannot_be_disabled() -> None:
    manager = b.hcm()
    manager.http_filters[0].disabled = True
    with pytest.raises(XdsValidationError, match=r"http_filters\[0\].disabled: the router"):
        LISTENER.decode(b.pack(b.listener(manager=manager)))
