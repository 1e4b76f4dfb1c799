"""HTTP filter configs meshlib runs (router, fault, local rate limit), in a
listener's filter chain and as ``typed_per_filter_config`` overrides.

As gRPC's xDS client (gRFC A39): a config of an unknown type is skipped when
marked optional (``HttpFilter.is_optional`` or ``FilterConfig.is_optional``)
and rejected otherwise; a known type with a bad config is always rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from google.protobuf import json_format
from udpa.type.v1 import typed_struct_pb2 as udpa_typed_struct_pb2
from xds.type.v3 import typed_struct_pb2 as xds_typed_struct_pb2

from meshlib.xds_client._decode_util import (
    DecodeContext,
    checked_duration_s,
    per_million,
    reject_if_set,
    unpack_any,
    wrapped,
)
from meshlib.xds_client.decode_headers import header_options
from meshlib.xds_client.decode_matchers import header_matchers
from meshlib.xds_client.filter_models import (
    FAULT_FILTER_TYPE_URL,
    LOCAL_RATELIMIT_FILTER_TYPE_URL,
    ROUTER_FILTER_TYPE_URL,
)
from meshlib.xds_client.frozen_map import EMPTY, FrozenMap
from meshlib.xds_client.resources import (
    FaultAbort,
    FaultDelay,
    FilterOverride,
    FilterOverrideConfig,
    HTTPFault,
    HttpFilterConfig,
    LocalRateLimit,
    RouterConfig,
    TokenBucket,
)

FILTER_CONFIG_TYPE_URL = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
TYPED_STRUCT_URLS = frozenset(
    "type.googleapis.com/" + cls.DESCRIPTOR.full_name
    for cls in (udpa_typed_struct_pb2.TypedStruct, xds_typed_struct_pb2.TypedStruct)
)
_FILTER_MESSAGES: dict[str, Any] = {
    ROUTER_FILTER_TYPE_URL: router_pb2.Router,
    FAULT_FILTER_TYPE_URL: fault_pb2.HTTPFault,
    LOCAL_RATELIMIT_FILTER_TYPE_URL: local_rate_limit_pb2.LocalRateLimit,
}
# Filter config type URLs meshlib implements.
SUPPORTED_FILTER_TYPE_URLS = frozenset(_FILTER_MESSAGES)


def filter_config(ctx: DecodeContext, config: Any, where: str) -> HttpFilterConfig | None:
    """Decode a filter's typed config; None when its type is not one meshlib runs.

    A TypedStruct wrapping a known type is read as that type (its JSON form).
    """
    url = config.type_url
    if url in TYPED_STRUCT_URLS:
        typed_struct = _typed_struct(ctx, config, where)
        url = typed_struct.type_url
        cls = _FILTER_MESSAGES.get(url)
        if cls is None:
            return None
        proto = cls()
        try:
            json_format.ParseDict(json_format.MessageToDict(typed_struct.value), proto)
        except json_format.ParseError as exc:
            raise ctx.error(f"{where}: TypedStruct is not a valid {url}: {exc}") from exc
    elif url in _FILTER_MESSAGES:
        proto = unpack_any(ctx, config, _FILTER_MESSAGES[url], where)
    else:
        return None
    if url == ROUTER_FILTER_TYPE_URL:
        reject_if_set(ctx, proto, ("upstream_http_filters",), where)
        return RouterConfig(suppress_envoy_headers=proto.suppress_envoy_headers)
    if url == FAULT_FILTER_TYPE_URL:
        return http_fault(ctx, proto, where)
    return local_rate_limit(ctx, proto, where)


def config_type_url(ctx: DecodeContext, config: Any, where: str) -> str:
    """The config's type URL, looking inside a TypedStruct wrapper."""
    if config.type_url in TYPED_STRUCT_URLS:
        return str(_typed_struct(ctx, config, where).type_url)
    return str(config.type_url)


def _typed_struct(ctx: DecodeContext, config: Any, where: str) -> Any:
    cls = (
        udpa_typed_struct_pb2.TypedStruct
        if config.type_url.endswith("udpa.type.v1.TypedStruct")
        else xds_typed_struct_pb2.TypedStruct
    )
    return unpack_any(ctx, config, cls, where)


def filter_overrides(ctx: DecodeContext, configs: Any, where: str) -> Mapping[str, FilterOverride]:
    """A ``typed_per_filter_config`` map (filter name -> Any) as FilterOverrides."""
    if not configs:
        return EMPTY
    out: dict[str, FilterOverride] = {}
    for name in sorted(configs):
        at = f'{where}["{name}"]'
        if not name:
            raise ctx.error(f"{where}: empty filter name")
        override = _filter_override(ctx, configs[name], at)
        if override is not None:
            out[name] = override
    return FrozenMap(out) if out else EMPTY


def _filter_override(ctx: DecodeContext, config: Any, where: str) -> FilterOverride | None:
    is_optional = disabled = False
    if config.type_url == FILTER_CONFIG_TYPE_URL:
        wrapper = unpack_any(ctx, config, route_components_pb2.FilterConfig, where)
        is_optional, disabled = wrapper.is_optional, wrapper.disabled
        if not wrapper.HasField("config"):
            if disabled:
                return FilterOverride(config=None, disabled=True)
            raise ctx.error(f"{where}.config: required unless disabled")
        config, where = wrapper.config, f"{where}.config"
    if config_type_url(ctx, config, where) == ROUTER_FILTER_TYPE_URL:
        raise ctx.error(f"{where}: the router filter takes no per-route config")
    decoded = filter_config(ctx, config, where)
    if decoded is None:
        if is_optional:
            return None
        raise ctx.error(f"{where}: filter config {config.type_url or '(none)'} is not supported")
    assert not isinstance(decoded, RouterConfig)  # refused above
    override: FilterOverrideConfig = decoded
    return FilterOverride(config=override, disabled=disabled)


def http_fault(ctx: DecodeContext, fault: Any, where: str) -> HTTPFault:
    """Validate one ``envoy.extensions.filters.http.fault.v3.HTTPFault`` (gRFC A33)."""
    reject_if_set(
        ctx, fault, ("upstream_cluster", "downstream_nodes", "response_rate_limit"), where
    )
    return HTTPFault(
        delay=_fault_delay(ctx, fault, f"{where}.delay") if fault.HasField("delay") else None,
        abort=_fault_abort(ctx, fault, f"{where}.abort") if fault.HasField("abort") else None,
        max_active_faults=wrapped(fault, "max_active_faults", None),
        headers=header_matchers(ctx, fault.headers, f"{where}.headers"),
    )


def _fault_delay(ctx: DecodeContext, fault: Any, where: str) -> FaultDelay:
    delay = fault.delay
    spec = delay.WhichOneof("fault_delay_secifier")
    chance = (
        per_million(ctx, delay.percentage, f"{where}.percentage")
        if delay.HasField("percentage")
        else 0
    )
    if spec == "header_delay":
        return FaultDelay(fixed_delay_s=None, per_million=chance)
    if spec == "fixed_delay":
        seconds = checked_duration_s(ctx, delay.fixed_delay, f"{where}.fixed_delay")
        if seconds <= 0:
            raise ctx.error(f"{where}.fixed_delay: must be greater than 0")
        return FaultDelay(fixed_delay_s=seconds, per_million=chance)
    raise ctx.error(f"{where}: fixed_delay or header_delay required")


def _fault_abort(ctx: DecodeContext, fault: Any, where: str) -> FaultAbort:
    abort = fault.abort
    spec = abort.WhichOneof("error_type")
    chance = (
        per_million(ctx, abort.percentage, f"{where}.percentage")
        if abort.HasField("percentage")
        else 0
    )
    if spec == "http_status":
        if not 200 <= abort.http_status < 600:
            raise ctx.error(f"{where}.http_status: {abort.http_status} is not in 200..599")
        return FaultAbort(http_status=abort.http_status, per_million=chance)
    if spec == "grpc_status":
        if abort.grpc_status > 16:
            raise ctx.error(f"{where}.grpc_status: {abort.grpc_status} is not a gRPC status code")
        return FaultAbort(grpc_status=abort.grpc_status, per_million=chance)
    if spec == "header_abort":
        return FaultAbort(header_controlled=True, per_million=chance)
    raise ctx.error(f"{where}: http_status, grpc_status or header_abort required")


def local_rate_limit(ctx: DecodeContext, config: Any, where: str) -> LocalRateLimit:
    """Validate one ``envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit``."""
    reject_if_set(ctx, config, ("descriptors", "local_cluster_rate_limit", "rate_limits"), where)
    if not config.stat_prefix:
        raise ctx.error(f"{where}.stat_prefix: required")
    status = 429
    if config.HasField("status"):
        status = config.status.code
        if not 100 <= status <= 599:
            raise ctx.error(f"{where}.status.code: {status} is not an HTTP status")
    if config.enable_x_ratelimit_headers not in (0, 1):
        raise ctx.error(
            f"{where}.enable_x_ratelimit_headers: unknown value {config.enable_x_ratelimit_headers}"
        )
    return LocalRateLimit(
        stat_prefix=config.stat_prefix,
        token_bucket=_token_bucket(ctx, config, f"{where}.token_bucket"),
        status=status,
        filter_enabled_per_million=_runtime_fraction(ctx, config, "filter_enabled", where),
        filter_enforced_per_million=_runtime_fraction(ctx, config, "filter_enforced", where),
        response_headers_to_add=header_options(
            ctx, config.response_headers_to_add, f"{where}.response_headers_to_add"
        ),
        request_headers_to_add_when_not_enforced=header_options(
            ctx,
            config.request_headers_to_add_when_not_enforced,
            f"{where}.request_headers_to_add_when_not_enforced",
        ),
        enable_x_ratelimit_headers=config.enable_x_ratelimit_headers == 1,
        local_rate_limit_per_downstream_connection=config.local_rate_limit_per_downstream_connection,
        rate_limited_as_resource_exhausted=config.rate_limited_as_resource_exhausted,
    )


def _runtime_fraction(ctx: DecodeContext, config: Any, field: str, where: str) -> int:
    """A RuntimeFractionalPercent's default, per million; unset: 0 (Envoy's safe default)."""
    if not config.HasField(field):
        return 0
    return per_million(ctx, getattr(config, field).default_value, f"{where}.{field}.default_value")


def _token_bucket(ctx: DecodeContext, config: Any, where: str) -> TokenBucket | None:
    if not config.HasField("token_bucket"):
        return None
    bucket = config.token_bucket
    if bucket.max_tokens == 0:
        raise ctx.error(f"{where}.max_tokens: must be greater than 0")
    tokens_per_fill = wrapped(bucket, "tokens_per_fill", 1)
    if tokens_per_fill == 0:
        raise ctx.error(f"{where}.tokens_per_fill: must be greater than 0")
    if not bucket.HasField("fill_interval"):
        raise ctx.error(f"{where}.fill_interval: required")
    interval = checked_duration_s(ctx, bucket.fill_interval, f"{where}.fill_interval")
    if interval <= 0:
        raise ctx.error(f"{where}.fill_interval: must be greater than 0")
    return TokenBucket(
        max_tokens=bucket.max_tokens, fill_interval_s=interval, tokens_per_fill=tokens_per_fill
    )
