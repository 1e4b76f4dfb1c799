"""Models of the HTTP filters meshlib runs: router, fault injection, local rate limit.

A listener carries an ordered tuple of :class:`HttpFilter`; routes, virtual
hosts and weighted clusters may override a filter's config by filter name
(``typed_per_filter_config`` -> :class:`FilterOverride`). Re-exported by
:mod:`meshlib.xds_client.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshlib.xds_client.route_policies import HeaderValueOption

if TYPE_CHECKING:
    from meshlib.xds_client.resources import HeaderMatcher

ROUTER_FILTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FAULT_FILTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
LOCAL_RATELIMIT_FILTER_TYPE_URL = (
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """envoy.extensions.filters.http.router.v3.Router (always the last filter)."""

    suppress_envoy_headers: bool = False


@dataclass(frozen=True, slots=True)
class FaultDelay:
    """Delay before forwarding. ``fixed_delay_s`` None: header-controlled
    (``x-envoy-fault-delay-request`` milliseconds)."""

    fixed_delay_s: float | None = None
    per_million: int = 0  # unset percentage: 0 (as Envoy)

    @property
    def header_controlled(self) -> bool:
        return self.fixed_delay_s is None


@dataclass(frozen=True, slots=True)
class FaultAbort:
    """Fail the request. Exactly one of ``http_status``, ``grpc_status`` and
    ``header_controlled`` (``x-envoy-fault-abort-request`` /
    ``x-envoy-fault-abort-grpc-request``) is set."""

    http_status: int | None = None  # 200..599
    grpc_status: int | None = None  # a gRPC status code number
    header_controlled: bool = False
    per_million: int = 0  # unset percentage: 0 (as Envoy)


@dataclass(frozen=True, slots=True)
class HTTPFault:
    """envoy.extensions.filters.http.fault.v3.HTTPFault, listener default or per route."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    max_active_faults: int | None = None  # None: unlimited
    headers: tuple[HeaderMatcher, ...] = ()  # all must match for a fault to apply


@dataclass(frozen=True, slots=True)
class TokenBucket:
    max_tokens: int  # > 0; the bucket starts full
    fill_interval_s: float  # > 0
    tokens_per_fill: int = 1  # > 0


@dataclass(frozen=True, slots=True)
class LocalRateLimit:
    """envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit.

    Envoy's safe defaults hold: unless ``filter_enabled_per_million`` and
    ``filter_enforced_per_million`` are set the filter neither checks nor
    enforces. A limited request gets ``status`` (gRPC: UNAVAILABLE, or
    RESOURCE_EXHAUSTED with ``rate_limited_as_resource_exhausted``).
    """

    stat_prefix: str
    token_bucket: TokenBucket | None = None  # None: no limit at this level
    status: int = 429
    filter_enabled_per_million: int = 0
    filter_enforced_per_million: int = 0
    response_headers_to_add: tuple[HeaderValueOption, ...] = ()  # on limited responses
    request_headers_to_add_when_not_enforced: tuple[HeaderValueOption, ...] = ()
    enable_x_ratelimit_headers: bool = False  # X-RateLimit-* (draft 03)
    local_rate_limit_per_downstream_connection: bool = False
    rate_limited_as_resource_exhausted: bool = False


# The config of a filter in a listener: the router or one of the filters meshlib runs.
HttpFilterConfig = RouterConfig | HTTPFault | LocalRateLimit
# What a route / virtual host / weighted cluster may override.
FilterOverrideConfig = HTTPFault | LocalRateLimit


@dataclass(frozen=True, slots=True)
class HttpFilter:
    """One HttpConnectionManager filter, in chain order."""

    name: str  # the instance name (the key of typed_per_filter_config)
    config: HttpFilterConfig
    disabled: bool = False  # off unless a route's FilterOverride enables it (disabled=False)


@dataclass(frozen=True, slots=True)
class FilterOverride:
    """A typed_per_filter_config entry: replaces the filter's listener config for
    this route (most specific level wins), or turns the filter off (``disabled``)."""

    config: FilterOverrideConfig | None
    disabled: bool = False  # FilterConfig.disabled: skip the filter here (config is None)
