"""Validated VirtualService and DestinationRule: the contract between the
config parser (which builds these) and translate (which turns them into xDS).

Field names and meanings follow Istio's networking API; durations are seconds
(float), percentages are floats in [0, 100]. Where Istio has no field for an
Envoy feature meshlib supports (retry budgets, hedging, success-rate and
failure-percentage outlier detection, local rate limits, the degraded switch),
the setting comes from a ``meshlib.dev/...`` annotation with a JSON value on the
resource; see docs/config.md. Those land in the typed ``*Extensions`` fields
here, never as raw strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.model import Source
from controlplane.security_model import ClientTLSSettings


def _no_matchers() -> Mapping[str, StringMatch]:
    return MappingProxyType({})


def _no_strings() -> Mapping[str, str]:
    return MappingProxyType({})


# --- VirtualService ----------------------------------------------------------


class MatchKind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"  # RE2, full match, as Envoy's safe_regex
    PRESENT = "present"  # Istio's empty StringMatch `{}` in headers / queryParams


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: MatchKind
    value: str = ""


@dataclass(frozen=True, slots=True)
class HTTPMatchRequest:
    """One match block; all its conditions must hold (AND)."""

    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=_no_matchers)  # lower-case keys
    query_params: Mapping[str, StringMatch] = field(default_factory=_no_matchers)
    without_headers: Mapping[str, StringMatch] = field(default_factory=_no_matchers)
    ignore_uri_case: bool = False
    port: int | None = None
    # Who may use the block (Istio: evaluated per caller when its routes are built):
    # the caller's labels must include these, its namespace must be this one ("" any).
    source_labels: Mapping[str, str] = field(default_factory=_no_strings)
    source_namespace: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None  # required when the host's ServiceEntry has several ports


@dataclass(frozen=True, slots=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=_no_strings)
    add: Mapping[str, str] = field(default_factory=_no_strings)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderOperations = field(default_factory=HeaderOperations)
    response: HeaderOperations = field(default_factory=HeaderOperations)


@dataclass(frozen=True, slots=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int = 0  # 0 with a single destination means all traffic
    headers: Headers | None = None


class RedirectPortPolicy(enum.Enum):
    FROM_PROTOCOL_DEFAULT = "FROM_PROTOCOL_DEFAULT"
    FROM_REQUEST_PORT = "FROM_REQUEST_PORT"


@dataclass(frozen=True, slots=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int | None = None
    derive_port: RedirectPortPolicy | None = None
    scheme: str = ""
    redirect_code: int = 301


@dataclass(frozen=True, slots=True)
class HTTPDirectResponse:
    status: int
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    match: str
    rewrite: str


@dataclass(frozen=True, slots=True)
class HTTPRewrite:
    uri: str = ""
    authority: str = ""
    uri_regex_rewrite: RegexRewrite | None = None


@dataclass(frozen=True, slots=True)
class HTTPRetry:
    attempts: int  # retries after the first try, as Istio means it
    per_try_timeout_s: float | None = None
    # Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on condition names, or status codes.
    retry_on: tuple[str, ...] = ()
    retry_remote_localities: bool = False


@dataclass(frozen=True, slots=True)
class FaultDelay:
    fixed_delay_s: float
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class FaultAbort:
    percentage: float = 100.0
    http_status: int | None = None
    grpc_status: str | None = None  # a gRPC status code name, e.g. "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class HTTPMirror:
    destination: Destination
    percentage: float = 100.0


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """Envoy's hedge_policy (no Istio field): annotation ``meshlib.dev/hedge``."""

    hedge_on_per_try_timeout: bool = True
    initial_requests: int = 1
    additional_request_chance: float = 0.0  # percent


@dataclass(frozen=True, slots=True)
class LocalRateLimit:
    """Envoy's local_ratelimit token bucket: annotation ``meshlib.dev/local-rate-limit``."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float
    status: int = 429


@dataclass(frozen=True, slots=True)
class VirtualServiceExtensions:
    hedge: HedgePolicy | None = None
    local_rate_limit: LocalRateLimit | None = None
    # Envoy's x-envoy-fault-* request headers honoured on this service's routes.
    fault_headers_enabled: bool = False
    max_active_faults: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    """One rule of ``spec.http``; rules are evaluated in order, first match wins.

    Exactly one of ``route``, ``redirect``, ``direct_response`` is set.
    """

    name: str = ""
    match: tuple[HTTPMatchRequest, ...] = ()  # OR of blocks; empty matches everything
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    rewrite: HTTPRewrite | None = None
    timeout_s: float | None = None  # None: no timeout; 0 also disables it
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirrors: tuple[HTTPMirror, ...] = ()  # `mirror` + `mirrorPercentage`, or `mirrors`
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class VirtualService:
    name: str
    namespace: str
    hosts: tuple[str, ...]  # ServiceEntry hosts (optionally HOST:PORT-free short names)
    http: tuple[HTTPRoute, ...]
    extensions: VirtualServiceExtensions = field(default_factory=VirtualServiceExtensions)
    source: Source | None = None


# --- DestinationRule -------------------------------------------------------------


class SimpleLB(enum.Enum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    PASSTHROUGH = "PASSTHROUGH"


class HashAlgorithm(enum.Enum):
    RING_HASH = "ringHash"
    MAGLEV = "maglev"


@dataclass(frozen=True, slots=True)
class HashCookie:
    name: str
    path: str = ""
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConsistentHash:
    """Exactly one hash key is set."""

    http_header_name: str = ""
    http_cookie: HashCookie | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str = ""
    algorithm: HashAlgorithm = HashAlgorithm.RING_HASH
    minimum_ring_size: int | None = None  # ringHash
    maglev_table_size: int | None = None  # maglev (a prime)


@dataclass(frozen=True, slots=True)
class LocalityDistribute:
    from_: str  # "region/zone/subzone", "*" wildcards allowed as in Istio
    to: Mapping[str, int]  # locality pattern -> weight percent (sums to 100)


@dataclass(frozen=True, slots=True)
class LocalityFailover:
    from_: str  # region
    to: str  # region


@dataclass(frozen=True, slots=True)
class LocalityLbSetting:
    enabled: bool = True
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()  # label keys, e.g. "topology.istio.io/network"


@dataclass(frozen=True, slots=True)
class LoadBalancerSettings:
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHash | None = None  # exclusive with simple
    locality_lb_setting: LocalityLbSetting | None = None
    warmup_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class SuccessRateEjection:
    """Envoy success-rate outlier detection: annotation ``meshlib.dev/outlier-success-rate``."""

    minimum_hosts: int = 5
    request_volume: int = 100
    stdev_factor: int = 1900  # Envoy's, divided by 1000
    enforcing: int = 100


@dataclass(frozen=True, slots=True)
class FailurePercentageEjection:
    """Envoy failure-percentage detection: annotation ``meshlib.dev/outlier-failure-percentage``."""

    threshold: int = 85
    minimum_hosts: int = 5
    request_volume: int = 50
    enforcing: int = 100


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None  # None: Istio default (5); 0 disables
    consecutive_gateway_errors: int | None = None  # None/0: disabled
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0  # Istio: ejection off below this healthy %


@dataclass(frozen=True, slots=True)
class TCPSettings:
    max_connections: int | None = None
    connect_timeout_s: float | None = None
    max_connection_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPoolSettings:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Envoy circuit_breakers.thresholds.retry_budget: annotation ``meshlib.dev/retry-budget``."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3


@dataclass(frozen=True, slots=True)
class TrafficPolicyExtensions:
    retry_budget: RetryBudget | None = None
    success_rate_ejection: SuccessRateEjection | None = None
    failure_percentage_ejection: FailurePercentageEjection | None = None


@dataclass(frozen=True, slots=True)
class PortTrafficPolicy:
    port: int
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=_no_strings)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRule:
    name: str
    namespace: str
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    extensions: TrafficPolicyExtensions = field(default_factory=TrafficPolicyExtensions)
    source: Source | None = None
