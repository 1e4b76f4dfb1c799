"""Models of the per-route policies in RDS: header mutations, rewrites,
redirects, direct responses, mirroring, timeouts, retries and hedging.

Re-exported by :mod:`meshlib.xds_client.resources` (import them from there).
Durations are seconds (float); fractions are integers per million.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshlib.xds_client.resources import HeaderMatcher

PER_MILLION = 1_000_000


class HeaderAppendAction(enum.Enum):
    """Envoy's HeaderValueOption.HeaderAppendAction."""

    APPEND_IF_EXISTS_OR_ADD = "append_if_exists_or_add"  # add another value (the default)
    ADD_IF_ABSENT = "add_if_absent"  # only when the header is not there yet
    OVERWRITE_IF_EXISTS_OR_ADD = "overwrite_if_exists_or_add"  # replace or add
    OVERWRITE_IF_EXISTS = "overwrite_if_exists"  # replace only when present


@dataclass(frozen=True, slots=True)
class HeaderValueOption:
    """One header to add. ``value`` may hold Envoy %COMMAND% substitutions, kept verbatim."""

    key: str  # lower-case
    value: str
    append_action: HeaderAppendAction = HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
    keep_empty_value: bool = False  # False: an empty value (after substitution) is not added


@dataclass(frozen=True, slots=True)
class HeaderMutations:
    """Headers to add / remove at one level (route config, vhost, route, weighted cluster).

    Envoy applies removals before additions at each level.
    """

    request_headers_to_add: tuple[HeaderValueOption, ...] = ()
    request_headers_to_remove: tuple[str, ...] = ()  # lower-case names
    response_headers_to_add: tuple[HeaderValueOption, ...] = ()
    response_headers_to_remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.request_headers_to_add
            or self.request_headers_to_remove
            or self.response_headers_to_add
            or self.response_headers_to_remove
        )


NO_HEADER_MUTATIONS = HeaderMutations()


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    """Replace every RE2 match of ``pattern`` in the path with ``substitution`` (\\1 groups)."""

    pattern: str
    substitution: str


@dataclass(frozen=True, slots=True)
class RedirectAction:
    """Answer with a redirect instead of forwarding; None fields keep the request's part.

    At most one of ``path_redirect``, ``prefix_rewrite``, ``regex_rewrite`` is set.
    """

    scheme: str | None = None  # "https" for https_redirect
    host: str | None = None
    port: int | None = None
    path_redirect: str | None = None  # may carry a query ("?a=b") as Envoy allows
    prefix_rewrite: str | None = None  # replaces the matched route prefix
    regex_rewrite: RegexRewrite | None = None
    response_code: int = 301  # 301, 302, 303, 307 or 308
    strip_query: bool = False


@dataclass(frozen=True, slots=True)
class DirectResponseAction:
    """Answer with ``status`` and ``body`` without forwarding."""

    status: int  # 200..599
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestMirrorPolicy:
    """Copy a fraction of requests to ``cluster``, fire and forget (responses discarded)."""

    cluster: str
    fraction_per_million: int = PER_MILLION  # runtime_fraction default_value; unset: all
    disable_shadow_host_suffix_append: bool = False  # False: Host gets a "-shadow" suffix
    trace_sampled: bool | None = None


@dataclass(frozen=True, slots=True)
class MaxStreamDuration:
    """RouteAction.max_stream_duration (gRFC A31 reads the first two)."""

    max_stream_duration_s: float | None = None  # None or 0: no limit
    grpc_timeout_header_max_s: float | None = None  # cap on grpc-timeout; 0: no cap
    grpc_timeout_header_offset_s: float | None = None  # subtracted from grpc-timeout


class RetryOn(enum.Enum):
    """Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions."""

    FIVE_XX = "5xx"
    GATEWAY_ERROR = "gateway-error"
    RESET = "reset"
    RESET_BEFORE_REQUEST = "reset-before-request"
    CONNECT_FAILURE = "connect-failure"
    ENVOY_RATELIMITED = "envoy-ratelimited"
    RETRIABLE_4XX = "retriable-4xx"
    REFUSED_STREAM = "refused-stream"
    RETRIABLE_STATUS_CODES = "retriable-status-codes"
    RETRIABLE_HEADERS = "retriable-headers"
    HTTP3_POST_CONNECT_FAILURE = "http3-post-connect-failure"
    # gRPC status conditions
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


GRPC_RETRY_ON = frozenset(
    {
        RetryOn.CANCELLED,
        RetryOn.DEADLINE_EXCEEDED,
        RetryOn.INTERNAL,
        RetryOn.RESOURCE_EXHAUSTED,
        RetryOn.UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class RetryBackOff:
    """Exponential back-off with full jitter: base, doubling, capped at ``max_interval_s``."""

    base_interval_s: float = 0.025
    max_interval_s: float = 0.25  # default 10 x base_interval


class ResetHeaderFormat(enum.Enum):
    SECONDS = "seconds"  # e.g. Retry-After: 30
    UNIX_TIMESTAMP = "unix_timestamp"  # e.g. X-RateLimit-Reset: 1700000000


@dataclass(frozen=True, slots=True)
class ResetHeader:
    name: str  # lower-case
    format: ResetHeaderFormat = ResetHeaderFormat.SECONDS


@dataclass(frozen=True, slots=True)
class RateLimitedRetryBackOff:
    """Back off as the upstream says (Retry-After style headers) on rate-limited answers."""

    reset_headers: tuple[ResetHeader, ...]  # first usable one wins; never empty
    max_interval_s: float = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Envoy's RetryPolicy, on a route or a virtual host (the route's wins)."""

    retry_on: frozenset[RetryOn] = frozenset()
    # retry_on names meshlib does not know: kept so they can be reported, never acted on.
    unknown_retry_on: tuple[str, ...] = ()
    num_retries: int = 1  # retries after the first attempt
    per_try_timeout_s: float | None = None  # None: the route timeout bounds each try
    per_try_idle_timeout_s: float | None = None
    retry_previous_hosts: bool = False  # retry_host_predicate previous_hosts
    host_selection_retry_max_attempts: int = 1
    retriable_status_codes: tuple[int, ...] = ()  # for RETRIABLE_STATUS_CODES
    retriable_headers: tuple[HeaderMatcher, ...] = ()  # response headers, for RETRIABLE_HEADERS
    retriable_request_headers: tuple[HeaderMatcher, ...] = ()  # retry only requests matching
    back_off: RetryBackOff = RetryBackOff()
    rate_limited_back_off: RateLimitedRetryBackOff | None = None
    # retry_priority previous_priorities: update_frequency (None: not configured)
    previous_priorities_update_frequency: int | None = None


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """Envoy's HedgePolicy, on a route or a virtual host (the route's wins)."""

    initial_requests: int = 1
    additional_request_chance_per_million: int = 0
    hedge_on_per_try_timeout: bool = False
