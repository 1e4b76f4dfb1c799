"""Models of a cluster's policies in CDS: load-balancer configs, common LB
config, outlier detection, circuit breakers and upstream HTTP options.

Defaults are Envoy's, so a field absent on the wire reads the way Envoy would
act. Re-exported by :mod:`meshlib.xds_client.resources`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_MIN_RING_SIZE = 1024
MAX_RING_SIZE = 8 * 1024 * 1024
DEFAULT_MAGLEV_TABLE_SIZE = 65537


@dataclass(frozen=True, slots=True)
class SlowStartConfig:
    """Ramp a new endpoint's weight up over ``window_s`` (Envoy slow start)."""

    window_s: float
    aggression: float = 1.0  # > 0; 1.0 is linear
    min_weight_percent: float = 10.0  # floor of the ramped weight, 0..100


@dataclass(frozen=True, slots=True)
class RoundRobinConfig:
    slow_start: SlowStartConfig | None = None


@dataclass(frozen=True, slots=True)
class LeastRequestConfig:
    choice_count: int = 2  # >= 2 (gRFC A48)
    active_request_bias: float = 1.0  # >= 0; weight / (active + 1) ** bias
    slow_start: SlowStartConfig | None = None


@dataclass(frozen=True, slots=True)
class RandomConfig:
    pass


@dataclass(frozen=True, slots=True)
class RingHashConfig:
    """Ring hash over xxHash64 (the only hash function accepted)."""

    minimum_ring_size: int = DEFAULT_MIN_RING_SIZE
    maximum_ring_size: int = MAX_RING_SIZE


@dataclass(frozen=True, slots=True)
class MaglevConfig:
    table_size: int = DEFAULT_MAGLEV_TABLE_SIZE  # a prime


@dataclass(frozen=True, slots=True)
class PickFirstConfig:
    shuffle_address_list: bool = False


# The config of ClusterResource.lb_policy; the type matches the policy name.
LbConfig = (
    RoundRobinConfig
    | LeastRequestConfig
    | RandomConfig
    | RingHashConfig
    | MaglevConfig
    | PickFirstConfig
)


@dataclass(frozen=True, slots=True)
class ZoneAwareLbConfig:
    """Prefer the caller's own zone, spilling over as Envoy's zone-aware routing does."""

    routing_enabled_percent: float = 100.0
    min_cluster_size: int = 6  # below this many endpoints, no zone awareness
    fail_traffic_on_panic: bool = False


@dataclass(frozen=True, slots=True)
class CommonLbConfig:
    """Cluster.common_lb_config. With neither ``zone_aware`` nor ``locality_weighted``
    the data path weights localities by their EDS weight (as gRPC does)."""

    healthy_panic_threshold_percent: float = 50.0  # 0 disables panic mode
    zone_aware: ZoneAwareLbConfig | None = None
    locality_weighted: bool = False


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Cluster.outlier_detection with Envoy's defaults (percentages are 0..100).

    A detector runs when its enforcing percentage is above 0: consecutive 5xx
    (on by default), gateway failures (off), local-origin failures (on, used only
    with ``split_external_local_origin_errors``), success rate (on), failure
    percentage (off). The ejection time is base * times ejected, capped at
    ``max_ejection_time_s``, plus up to ``max_ejection_time_jitter_s``.
    """

    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_time_s: float = 300.0  # unset: max(300 s, base_ejection_time)
    max_ejection_time_jitter_s: float = 0.0
    max_ejection_percent: int = 10
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    consecutive_local_origin_failure: int = 5
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway_failure: int = 0
    enforcing_consecutive_local_origin_failure: int = 100
    enforcing_success_rate: int = 100
    enforcing_local_origin_success_rate: int = 100
    enforcing_failure_percentage: int = 0
    enforcing_failure_percentage_local_origin: int = 0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900  # divide by 1000: eject below mean - 1.9 * stdev
    failure_percentage_threshold: int = 85
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    split_external_local_origin_errors: bool = False
    successful_active_health_check_uneject_host: bool = True
    always_eject_one_host: bool = False


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Allowed concurrent retries: max(min_retry_concurrency, active requests * percent)."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3


@dataclass(frozen=True, slots=True)
class CircuitBreakerThresholds:
    """The DEFAULT-priority thresholds (Envoy's defaults when absent).

    With ``retry_budget`` set, ``max_retries`` is not used (as Envoy).
    """

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    retry_budget: RetryBudget | None = None
    track_remaining: bool = False


class UpstreamProtocol(enum.Enum):
    HTTP1 = "http1"
    HTTP2 = "http2"  # h2c on plain connections
    AUTO = "auto"  # ALPN on TLS, else HTTP/1.1
    USE_DOWNSTREAM = "use_downstream"


@dataclass(frozen=True, slots=True)
class HttpProtocolOptions:
    """typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].

    None: not set on the wire (Envoy: idle 1 h, no other limit; protocol HTTP/1.1).
    """

    upstream_protocol: UpstreamProtocol | None = None
    idle_timeout_s: float | None = None  # 0: no idle timeout
    max_connection_duration_s: float | None = None
    max_requests_per_connection: int | None = None
    max_stream_duration_s: float | None = None


DEFAULT_COMMON_LB_CONFIG = CommonLbConfig()
DEFAULT_CIRCUIT_BREAKERS = CircuitBreakerThresholds()
DEFAULT_HTTP_PROTOCOL_OPTIONS = HttpProtocolOptions()
