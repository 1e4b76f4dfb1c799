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
from dataclasses import dataclass

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
    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class HashPolicy:
    """One RouteAction.hash_policy entry (issue 3 fills these in)."""

    kind: str  # "header" | "cookie" | "source_ip" | "query_parameter" | "filter_state"
    name: str = ""
    terminal: bool = False
    regex: str | None = None
    substitution: str = ""


@dataclass(frozen=True, slots=True)
class RouteAction:
    """Forward to one cluster or to weighted clusters (exactly one is set)."""

    cluster: str | None = None
    weighted_clusters: tuple[ClusterWeight, ...] = ()
    timeout_s: float | None = None  # None: no route timeout
    hash_policies: tuple[HashPolicy, ...] = ()
    prefix_rewrite: str | None = None
    host_rewrite: str | None = None

    def cluster_names(self) -> tuple[str, ...]:
        if self.cluster is not None:
            return (self.cluster,)
        return tuple(c.name for c in self.weighted_clusters)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: RouteMatch
    action: RouteAction | None  # None: a non-forwarding route (the request fails)


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RouteConfigResource:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]

    def cluster_names(self) -> frozenset[str]:
        return frozenset(
            c
            for vh in self.virtual_hosts
            for r in vh.routes
            if r.action is not None
            for c in r.action.cluster_names()
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
    http_filters: tuple[str, ...] = ("envoy.filters.http.router",)
    max_stream_duration_s: float | None = None


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
    lb_policy: str = "round_robin"  # a name in meshlib.balancing's registry
    connect_timeout_s: float = 5.0
    # LOGICAL_DNS: the single host:port to resolve
    dns_host: str | None = None
    dns_port: int | None = None
    # AGGREGATE: child clusters in priority order
    aggregate_clusters: tuple[str, ...] = ()


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

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 bracketed, as URLs and gRPC targets want it."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LocalityEndpoints:
    locality: Locality
    weight: int  # load_balancing_weight; must be > 0
    priority: int
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class DropOverload:
    category: str
    per_million: int


@dataclass(frozen=True, slots=True)
class EndpointsResource:
    cluster_name: str
    localities: tuple[LocalityEndpoints, ...]
    drop_overloads: tuple[DropOverload, ...] = ()
    overprovisioning_factor: int = 140

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for loc in self.localities for e in loc.endpoints)


# Everything a watcher can be handed.
Resource = ListenerResource | RouteConfigResource | ClusterResource | EndpointsResource
