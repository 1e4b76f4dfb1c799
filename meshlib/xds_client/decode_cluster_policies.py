"""A cluster's resilience settings: outlier detection (gRFC A50 checks, Envoy
defaults), circuit-breaker thresholds, upstream HTTP protocol options, and
meshlib's ``degraded`` switch from the cluster metadata."""

from __future__ import annotations

from typing import Any

from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from meshlib.observability.logging import get_logger
from meshlib.xds_client._decode_util import (
    DecodeContext,
    at_most_100,
    optional_duration_s,
    percent,
    positive_duration_s,
    reject_if_set,
    unpack_any,
    wrapped,
)
from meshlib.xds_client.cluster_policies import (
    DEFAULT_CIRCUIT_BREAKERS,
    DEFAULT_HTTP_PROTOCOL_OPTIONS,
)
from meshlib.xds_client.resources import (
    CircuitBreakerThresholds,
    HttpProtocolOptions,
    OutlierDetection,
    RetryBudget,
    UpstreamProtocol,
)

log = get_logger(__name__)

HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP_PROTOCOL_OPTIONS_URL = "type.googleapis.com/" + HTTP_PROTOCOL_OPTIONS_KEY
_MESHLIB_METADATA = "meshlib"
_DEFAULTS = OutlierDetection()
# OutlierDetection UInt32Value fields that are percentages (gRFC A50: at most 100).
_PERCENT_FIELDS = (
    "max_ejection_percent",
    "enforcing_consecutive_5xx",
    "enforcing_consecutive_gateway_failure",
    "enforcing_consecutive_local_origin_failure",
    "enforcing_success_rate",
    "enforcing_local_origin_success_rate",
    "enforcing_failure_percentage",
    "enforcing_failure_percentage_local_origin",
    "failure_percentage_threshold",
)
_COUNT_FIELDS = (
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "consecutive_local_origin_failure",
    "success_rate_minimum_hosts",
    "success_rate_request_volume",
    "success_rate_stdev_factor",
    "failure_percentage_minimum_hosts",
    "failure_percentage_request_volume",
)


def outlier_detection(ctx: DecodeContext, msg: Any) -> OutlierDetection | None:
    """Cluster.outlier_detection; None when absent (no detection)."""
    if not msg.HasField("outlier_detection"):
        return None
    where = "outlier_detection"
    od = msg.outlier_detection
    reject_if_set(ctx, od, ("monitors",), where)
    values: dict[str, Any] = {}
    for name in _PERCENT_FIELDS:
        value = wrapped(od, name, getattr(_DEFAULTS, name))
        values[name] = at_most_100(ctx, value, f"{where}.{name}")
    for name in _COUNT_FIELDS:
        values[name] = wrapped(od, name, getattr(_DEFAULTS, name))
    interval = positive_duration_s(ctx, od, "interval", where)
    base = positive_duration_s(ctx, od, "base_ejection_time", where)
    base = _DEFAULTS.base_ejection_time_s if base is None else base
    maximum = positive_duration_s(ctx, od, "max_ejection_time", where)
    if maximum is None:
        maximum = max(_DEFAULTS.max_ejection_time_s, base)  # Envoy: whichever is larger
    elif maximum < base:
        raise ctx.error(f"{where}.max_ejection_time: must not be less than base_ejection_time")
    jitter = optional_duration_s(ctx, od, "max_ejection_time_jitter", where)
    return OutlierDetection(
        interval_s=_DEFAULTS.interval_s if interval is None else interval,
        base_ejection_time_s=base,
        max_ejection_time_s=maximum,
        max_ejection_time_jitter_s=jitter or 0.0,
        split_external_local_origin_errors=od.split_external_local_origin_errors,
        successful_active_health_check_uneject_host=wrapped(
            od, "successful_active_health_check_uneject_host", True
        ),
        always_eject_one_host=wrapped(od, "always_eject_one_host", False),
        **values,
    )


def circuit_breakers(ctx: DecodeContext, msg: Any) -> CircuitBreakerThresholds:
    """The DEFAULT-priority thresholds of Cluster.circuit_breakers (Envoy's defaults)."""
    if not msg.HasField("circuit_breakers"):
        return DEFAULT_CIRCUIT_BREAKERS
    where = "circuit_breakers"
    breakers = msg.circuit_breakers
    reject_if_set(ctx, breakers, ("per_host_thresholds",), where)
    out = DEFAULT_CIRCUIT_BREAKERS
    seen: set[int] = set()
    for i, threshold in enumerate(breakers.thresholds):
        at = f"{where}.thresholds[{i}]"
        if threshold.priority in seen:
            raise ctx.error(f"{at}.priority: a second threshold for the same priority")
        seen.add(threshold.priority)
        decoded = _thresholds(ctx, threshold, at)
        if threshold.priority == 0:  # DEFAULT; HIGH applies only to high-priority routes
            out = decoded
        else:
            log.info("xds_circuit_breaker_priority_ignored", where=at, priority=threshold.priority)
    return out


def _thresholds(ctx: DecodeContext, threshold: Any, where: str) -> CircuitBreakerThresholds:
    if threshold.priority not in (0, 1):
        raise ctx.error(f"{where}.priority: unknown value {threshold.priority}")
    budget: RetryBudget | None = None
    if threshold.HasField("retry_budget"):
        rb = threshold.retry_budget
        budget = RetryBudget(
            budget_percent=percent(ctx, rb, "budget_percent", f"{where}.retry_budget", 20.0),
            min_retry_concurrency=wrapped(rb, "min_retry_concurrency", 3),
        )
    return CircuitBreakerThresholds(
        max_connections=wrapped(threshold, "max_connections", 1024),
        max_pending_requests=wrapped(threshold, "max_pending_requests", 1024),
        max_requests=wrapped(threshold, "max_requests", 1024),
        max_retries=wrapped(threshold, "max_retries", 3),
        retry_budget=budget,
        track_remaining=threshold.track_remaining,
    )


def http_protocol_options(ctx: DecodeContext, msg: Any) -> HttpProtocolOptions:
    """typed_extension_protocol_options: only the upstream HttpProtocolOptions is known."""
    options = msg.typed_extension_protocol_options
    for key in sorted(options):
        if key != HTTP_PROTOCOL_OPTIONS_KEY:
            raise ctx.error(f'typed_extension_protocol_options["{key}"]: not supported')
    if HTTP_PROTOCOL_OPTIONS_KEY not in options:
        return DEFAULT_HTTP_PROTOCOL_OPTIONS
    where = f'typed_extension_protocol_options["{HTTP_PROTOCOL_OPTIONS_KEY}"]'
    any_msg = options[HTTP_PROTOCOL_OPTIONS_KEY]
    if any_msg.type_url != _HTTP_PROTOCOL_OPTIONS_URL:
        raise ctx.error(f"{where}: expected {_HTTP_PROTOCOL_OPTIONS_URL}, got {any_msg.type_url}")
    proto = unpack_any(ctx, any_msg, http_protocol_options_pb2.HttpProtocolOptions, where)
    reject_if_set(
        ctx,
        proto,
        (
            "http_filters",
            "outlier_detection",
            "request_mirror_policies",
            "hash_policy",
            "retry_policy",
        ),
        where,
    )
    common = proto.common_http_protocol_options
    at = f"{where}.common_http_protocol_options"
    return HttpProtocolOptions(
        upstream_protocol=_upstream_protocol(ctx, proto, where),
        idle_timeout_s=optional_duration_s(ctx, common, "idle_timeout", at),
        max_connection_duration_s=optional_duration_s(ctx, common, "max_connection_duration", at),
        max_requests_per_connection=wrapped(common, "max_requests_per_connection", None),
        max_stream_duration_s=optional_duration_s(ctx, common, "max_stream_duration", at),
    )


def _upstream_protocol(ctx: DecodeContext, proto: Any, where: str) -> UpstreamProtocol | None:
    spec = proto.WhichOneof("upstream_protocol_options")
    if spec == "explicit_http_config":
        which = proto.explicit_http_config.WhichOneof("protocol_config")
        if which == "http_protocol_options":
            return UpstreamProtocol.HTTP1
        if which == "http2_protocol_options":
            return UpstreamProtocol.HTTP2
        raise ctx.error(f"{where}.explicit_http_config: {which or 'a protocol'} is not supported")
    if spec == "use_downstream_protocol_config":
        return UpstreamProtocol.USE_DOWNSTREAM
    if spec == "auto_config":
        if proto.auto_config.HasField("http3_protocol_options"):
            raise ctx.error(f"{where}.auto_config.http3_protocol_options: not supported")
        return UpstreamProtocol.AUTO
    return None


def degraded(ctx: DecodeContext, msg: Any) -> bool:
    """metadata.filter_metadata["meshlib"]["degraded"] (a bool); False when absent."""
    if _MESHLIB_METADATA not in msg.metadata.filter_metadata:
        return False
    fields = msg.metadata.filter_metadata[_MESHLIB_METADATA].fields
    if "degraded" not in fields:
        return False
    value = fields["degraded"]
    if value.WhichOneof("kind") != "bool_value":
        raise ctx.error(f'metadata.filter_metadata["{_MESHLIB_METADATA}"].degraded: must be a bool')
    return bool(value.bool_value)
