"""Validated, immutable models of the four xDS resource types meshlib consumes.

These are the contract between the xDS client (which decodes and validates
protobufs into them) and the data path (which builds route tables and pickers
from them). They hold only what meshlib acts on; a field meshlib does not yet
support is rejected by the decoder (NACK), never silently dropped, unless it
is harmless to ignore (as gRPC's xDS client ignores it).

Type URLs are those of Envoy's v3 API.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshlib.xds_client.cluster_policies import (
    DEFAULT_CIRCUIT_BREAKERS,
    DEFAULT_COMMON_LB_CONFIG,
    DEFAULT_HTTP_PROTOCOL_OPTIONS,
    CircuitBreakerThresholds,
    CommonLbConfig,
    HttpProtocolOptions,
    LbConfig,
    LeastRequestConfig,
    MaglevConfig,
    OutlierDetection,
    PickFirstConfig,
    RandomConfig,
    RetryBudget,
    RingHashConfig,
    RoundRobinConfig,
    SlowStartConfig,
    UpstreamProtocol,
    ZoneAwareLbConfig,
)
from meshlib.xds_client.filter_models import (
    FaultAbort,
    FaultDelay,
    FilterOverride,
    FilterOverrideConfig,
    HTTPFault,
    HttpFilter,
    HttpFilterConfig,
    LocalRateLimit,
    RouterConfig,
    TokenBucket,
)
from meshlib.xds_client.frozen_map import EMPTY, FrozenMap
from meshlib.xds_client.route_policies import (
    NO_HEADER_MUTATIONS,
    DirectResponseAction,
    HeaderAppendAction,
    HeaderMutations,
    HeaderValueOption,
    HedgePolicy,
    MaxStreamDuration,
    RateLimitedRetryBackOff,
    RedirectAction,
    RegexRewrite,
    RequestMirrorPolicy,
    ResetHeader,
    ResetHeaderFormat,
    RetryBackOff,
    RetryOn,
    RetryPolicy,
)

if TYPE_CHECKING:
    from meshlib.xds_client.upstream_tls import UpstreamTls

LISTENER_TYPE_URL = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_CONFIG_TYPE_URL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE_URL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS_TYPE_URL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


# --- RDS -------------------------------------------------------------------


class PathMatchKind(enum.Enum):
    PREFIX = "prefix"
    PATH = "path"  # exact
    SAFE_REGEX = "safe_regex"
    PATH_SEPARATED_PREFIX = "path_separated_prefix"


class HeaderMatchKind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    CONTAINS = "contains"
    SAFE_REGEX = "safe_regex"
    PRESENT = "present"
    RANGE = "range"


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    name: str
    kind: HeaderMatchKind
    value: str = ""  # the string / regex; "" for PRESENT
    invert: bool = False
    ignore_case: bool = False
    range_start: int = 0  # RANGE: [start, end)
    range_end: int = 0
    present: bool = True  # PRESENT: match when present (False: when absent)


@dataclass(frozen=True, slots=True)
class QueryParameterMatcher:
    name: str
    kind: HeaderMatchKind  # EXACT, PREFIX, SUFFIX, CONTAINS, SAFE_REGEX or PRESENT
    value: str = ""
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path_kind: PathMatchKind
    path: str  # prefix, exact path or RE2 pattern
    case_sensitive: bool = True
    headers: tuple[HeaderMatcher, ...] = ()
    query_parameters: tuple[QueryParameterMatcher, ...] = ()
    # runtime_fraction default_value as numerator per million (None: always)
    fraction_per_million: int | None = None


@dataclass(frozen=True, slots=True)
class ClusterWeight:
    """One weighted_clusters entry (entries of weight 0 are dropped by the decoder)."""

    name: str
    weight: int
    headers: HeaderMutations = NO_HEADER_MUTATIONS
    typed_per_filter_config: Mapping[str, FilterOverride] = EMPTY  # by filter name
    host_rewrite: str | None = None  # host_rewrite_literal for this cluster


@dataclass(frozen=True, slots=True)
class HashPolicy:
    """One RouteAction.hash_policy entry (issue 3 fills these in)."""

    kind: str  # "header" | "cookie" | "source_ip" | "query_parameter" | "filter_state"
    name: str = ""  # header / cookie / query parameter name, filter state key
    terminal: bool = False  # stop at this policy if it produced a hash
    regex: str | None = None  # header: RE2 pattern rewritten before hashing
    substitution: str = ""
    cookie_ttl_s: float | None = None  # cookie: set one with this TTL when absent (0: session)
    cookie_path: str = ""  # cookie: Path attribute of a generated cookie


@dataclass(frozen=True, slots=True)
class RouteAction:
    """Forward to one cluster or to weighted clusters (exactly one is set).

    ``timeout_s`` is the effective timeout as gRPC computes it (gRFC A31:
    max_stream_duration.grpc_timeout_header_max, then max_stream_duration, then
    ``timeout``); the raw fields are kept alongside for Envoy's HTTP semantics.
    ``retry_policy`` and ``hedge_policy`` are already resolved: the route's own,
    else its virtual host's.
    """

    cluster: str | None = None
    weighted_clusters: tuple[ClusterWeight, ...] = ()
    timeout_s: float | None = None  # None: no route timeout
    hash_policies: tuple[HashPolicy, ...] = ()
    prefix_rewrite: str | None = None
    host_rewrite: str | None = None  # host_rewrite_literal
    total_weight: int | None = None  # weighted_clusters.total_weight when set (== sum)
    request_mirror_policies: tuple[RequestMirrorPolicy, ...] = ()
    regex_rewrite: RegexRewrite | None = None  # exclusive with prefix_rewrite
    request_timeout_s: float | None = None  # RouteAction.timeout; None unset (Envoy: 15 s), 0 off
    idle_timeout_s: float | None = None  # None unset; 0 off
    max_stream_duration: MaxStreamDuration | None = None
    retry_policy: RetryPolicy | None = None
    hedge_policy: HedgePolicy | None = None

    def cluster_names(self) -> tuple[str, ...]:
        if self.cluster is not None:
            return (self.cluster,)
        return tuple(c.name for c in self.weighted_clusters)

    def mirror_cluster_names(self) -> tuple[str, ...]:
        return tuple(m.cluster for m in self.request_mirror_policies)


@dataclass(frozen=True, slots=True)
class Route:
    """A route: forward (``action``), redirect, or answer directly.

    At most one of ``action``, ``redirect`` and ``direct_response`` is set;
    none set is a non-forwarding route (matching requests fail).
    """

    name: str
    match: RouteMatch
    action: RouteAction | None  # None: not forwarded (see redirect / direct_response)
    redirect: RedirectAction | None = None
    direct_response: DirectResponseAction | None = None
    headers: HeaderMutations = NO_HEADER_MUTATIONS
    typed_per_filter_config: Mapping[str, FilterOverride] = EMPTY  # by filter name


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    headers: HeaderMutations = NO_HEADER_MUTATIONS
    typed_per_filter_config: Mapping[str, FilterOverride] = EMPTY  # by filter name
    retry_policy: RetryPolicy | None = None  # also resolved into each RouteAction
    hedge_policy: HedgePolicy | None = None  # also resolved into each RouteAction


@dataclass(frozen=True, slots=True)
class RouteConfigResource:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    headers: HeaderMutations = NO_HEADER_MUTATIONS
    typed_per_filter_config: Mapping[str, FilterOverride] = EMPTY  # by filter name
    # Envoy applies header mutations route -> vhost -> route config (least specific
    # wins on conflict); True reverses that.
    most_specific_header_mutations_wins: bool = False

    def cluster_names(self) -> frozenset[str]:
        """Every cluster a request can be sent to, mirror clusters included."""
        return frozenset(
            c
            for vh in self.virtual_hosts
            for r in vh.routes
            if r.action is not None
            for c in r.action.cluster_names() + r.action.mirror_cluster_names()
        )


# --- LDS -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerResource:
    """An api_listener (proxyless) with an HttpConnectionManager.

    Exactly one of ``route_config_name`` (RDS over ADS) and ``route_config``
    (inline) is set.
    """

    name: str
    route_config_name: str | None
    route_config: RouteConfigResource | None
    http_filters: tuple[str, ...] = ("envoy.filters.http.router",)  # names, in order
    max_stream_duration_s: float | None = None
    # The same chain with each filter's decoded config (optional unknown ones skipped).
    filters: tuple[HttpFilter, ...] = (HttpFilter("envoy.filters.http.router", RouterConfig()),)


# --- CDS -------------------------------------------------------------------


class ClusterType(enum.Enum):
    EDS = "EDS"
    LOGICAL_DNS = "LOGICAL_DNS"
    AGGREGATE = "AGGREGATE"


@dataclass(frozen=True, slots=True)
class ClusterResource:
    name: str
    type: ClusterType
    eds_service_name: str  # the EDS resource name (cluster name when unset on the wire)
    # A name in meshlib.balancing's registry: round_robin, least_request, random,
    # ring_hash, maglev or pick_first.
    lb_policy: str = "round_robin"
    connect_timeout_s: float = 5.0
    # LOGICAL_DNS: the single host:port to resolve
    dns_host: str | None = None
    dns_port: int | None = None
    # AGGREGATE: child clusters in priority order
    aggregate_clusters: tuple[str, ...] = ()
    # The config of lb_policy (its type matches the name); None: the policy's defaults.
    lb_config: LbConfig | None = None
    common_lb_config: CommonLbConfig = DEFAULT_COMMON_LB_CONFIG
    outlier_detection: OutlierDetection | None = None  # None: no outlier detection
    circuit_breakers: CircuitBreakerThresholds = DEFAULT_CIRCUIT_BREAKERS
    http_protocol_options: HttpProtocolOptions = DEFAULT_HTTP_PROTOCOL_OPTIONS
    # metadata filter_metadata["meshlib"]["degraded"]: callers should use their fallback.
    degraded: bool = False
    # transport_socket (UpstreamTlsContext): None = plaintext.
    tls: UpstreamTls | None = None


# --- EDS -------------------------------------------------------------------


class HealthStatus(enum.Enum):
    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2
    DRAINING = 3
    TIMEOUT = 4
    DEGRADED = 5

    @property
    def usable(self) -> bool:
        """gRPC and Envoy route to HEALTHY and UNKNOWN endpoints only."""
        return self in (HealthStatus.HEALTHY, HealthStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Locality:
    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    def __str__(self) -> str:
        return "/".join((self.region, self.zone, self.sub_zone))


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str  # IP or hostname
    port: int
    health: HealthStatus = HealthStatus.UNKNOWN
    weight: int = 1
    hostname: str = ""
    labels: Mapping[str, str] = EMPTY  # metadata filter_metadata["envoy.lb"] (a FrozenMap)
    # metadata filter_metadata["meshlib"]["identity"]: the workload's SPIFFE ID ("" unknown)
    identity: str = ""
    #: ``host:port`` with IPv6 bracketed, as URLs and gRPC targets want it (computed
    #: once: the data path reads it several times per call).
    authority: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = f"[{self.address}]" if ":" in self.address else self.address
        object.__setattr__(self, "authority", f"{host}:{self.port}")


@dataclass(frozen=True, slots=True)
class LocalityEndpoints:
    locality: Locality
    weight: int  # load_balancing_weight; must be > 0
    priority: int
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class DropOverload:
    category: str
    per_million: int  # 0..1_000_000


@dataclass(frozen=True, slots=True)
class EndpointsResource:
    cluster_name: str
    localities: tuple[LocalityEndpoints, ...]
    drop_overloads: tuple[DropOverload, ...] = ()
    overprovisioning_factor: int = 140  # percent; > 0

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for loc in self.localities for e in loc.endpoints)


# Everything a watcher can be handed.
Resource = ListenerResource | RouteConfigResource | ClusterResource | EndpointsResource

__all__ = [
    "CLUSTER_TYPE_URL",
    "EMPTY",
    "ENDPOINTS_TYPE_URL",
    "LISTENER_TYPE_URL",
    "NO_HEADER_MUTATIONS",
    "ROUTE_CONFIG_TYPE_URL",
    "CircuitBreakerThresholds",
    "ClusterResource",
    "ClusterType",
    "ClusterWeight",
    "CommonLbConfig",
    "DirectResponseAction",
    "DropOverload",
    "Endpoint",
    "EndpointsResource",
    "FaultAbort",
    "FaultDelay",
    "FilterOverride",
    "FilterOverrideConfig",
    "FrozenMap",
    "HTTPFault",
    "HashPolicy",
    "HeaderAppendAction",
    "HeaderMatchKind",
    "HeaderMatcher",
    "HeaderMutations",
    "HeaderValueOption",
    "HealthStatus",
    "HedgePolicy",
    "HttpFilter",
    "HttpFilterConfig",
    "HttpProtocolOptions",
    "LbConfig",
    "LeastRequestConfig",
    "ListenerResource",
    "LocalRateLimit",
    "Locality",
    "LocalityEndpoints",
    "MaglevConfig",
    "MaxStreamDuration",
    "OutlierDetection",
    "PathMatchKind",
    "PickFirstConfig",
    "QueryParameterMatcher",
    "RandomConfig",
    "RateLimitedRetryBackOff",
    "RedirectAction",
    "RegexRewrite",
    "RequestMirrorPolicy",
    "ResetHeader",
    "ResetHeaderFormat",
    "Resource",
    "RetryBackOff",
    "RetryBudget",
    "RetryOn",
    "RetryPolicy",
    "RingHashConfig",
    "RoundRobinConfig",
    "Route",
    "RouteAction",
    "RouteConfigResource",
    "RouteMatch",
    "RouterConfig",
    "SlowStartConfig",
    "TokenBucket",
    "UpstreamProtocol",
    "VirtualHost",
    "ZoneAwareLbConfig",
]
