"""A route's retry, hedging and timeout settings from xDS, as resilience policies.

Pure mapping from the decoded RDS models (:mod:`meshlib.xds_client.resources`)
to :class:`~meshlib.resilience.retry.RetryPolicy` and friends, done once when a
route table is built, never per request. What meshlib reads:

- ``RetryPolicy.retry_on`` (HTTP and gRPC names share Envoy's one list),
  ``num_retries``, ``per_try_timeout``, ``retry_back_off``,
  ``rate_limited_retry_back_off`` (reset headers), ``retriable_status_codes``,
  ``retriable_headers``, the ``previous_hosts`` host predicate. Unknown
  ``retry_on`` names are ignored (the decoder logged them), as Envoy does.
- ``retriable_request_headers``: a request is retried only if one matches (as
  Envoy). A matcher on ``:method`` is also the route's explicit permission to
  retry non-idempotent methods it matches; without one, a POST / PATCH over
  HTTP is retried only when it provably never reached the server
  (connect-failure, refused-stream). gRPC calls count as idempotent: a retry
  policy on a gRPC route is the service owner's opt-in (gRFC A6 / A44).
- ``per_try_idle_timeout``: the HTTP path uses it as each try's read timeout.
- ``HedgePolicy.hedge_on_per_try_timeout``; ``initial_requests`` and
  ``additional_request_chance`` are not implemented by Envoy either and are ignored.
- Timeouts. HTTP: ``RouteAction.timeout`` as Envoy reads it (unset: Envoy's
  15 s; 0: none; capped by ``max_stream_duration``). The control plane always
  writes it (Istio's default 0 = no timeout). gRPC: gRFC A31's order
  (``max_stream_duration.grpc_timeout_header_max``, then ``max_stream_duration``,
  then ``timeout``; 0 = none) caps the caller's own deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from meshlib.matching.matchers import CompiledHeaderMatch
from meshlib.resilience.backoff import BackOff, RateLimitedBackOff, ResetFormat, ResetHeader
from meshlib.resilience.conditions import RetryOn, is_idempotent_method
from meshlib.resilience.retry import RetryPolicy
from meshlib.xds_client import resources as xds

ENVOY_DEFAULT_ROUTE_TIMEOUT_S: Final = 15.0
METHOD_HEADER: Final = ":method"

NO_RETRY: Final = RetryPolicy(num_retries=0)
_RESET_FORMATS: Final = {
    xds.ResetHeaderFormat.SECONDS: ResetFormat.SECONDS,
    xds.ResetHeaderFormat.UNIX_TIMESTAMP: ResetFormat.UNIX_TIMESTAMP,
}


@dataclass(frozen=True, slots=True)
class RouteRetry:
    """One route's retry behaviour, compiled: the policy plus per-request eligibility.

    ``request_matchers`` are ``retriable_request_headers`` (empty: every request
    may be retried); :meth:`allows` evaluates them against the request headers
    plus ``:method``. ``single`` is the policy for a request they exclude: no
    retries, the per-try timeout kept. ``checks_answers`` says whether a
    successful answer can still be retriable (header conditions), so the
    request path can skip classifying plain 2xx / OK answers.
    """

    policy: RetryPolicy
    request_matchers: tuple[CompiledHeaderMatch, ...] = ()
    methods_explicit: bool = False
    single: RetryPolicy = NO_RETRY
    checks_answers: bool = False

    def allows(self, headers: Mapping[str, str], method: str | None = None) -> bool:
        """Whether this request may be retried at all (``retriable_request_headers``)."""
        if not self.request_matchers:
            return True
        for matcher in self.request_matchers:
            if matcher.name == METHOD_HEADER:
                if method is not None and matcher.matches({METHOD_HEADER: method}):
                    return True
            elif matcher.matches(headers):
                return True
        return False

    def idempotent(self, method: str) -> bool:
        """Whether retries may resend ``method`` after it reached the server.

        True for RFC 9110 idempotent methods, and for any method the route's
        ``retriable_request_headers`` name explicitly through ``:method``
        (:meth:`allows` has already required a match).
        """
        return self.methods_explicit or is_idempotent_method(method)


@dataclass(frozen=True, slots=True)
class RouteTimeouts:
    """The time limits of one route, in seconds (``None``: no limit)."""

    http_timeout_s: float | None
    grpc_max_timeout_s: float | None
    per_try_idle_timeout_s: float | None = None


def _compile_headers(
    matchers: tuple[xds.HeaderMatcher, ...], where: str
) -> tuple[CompiledHeaderMatch, ...]:
    return tuple(CompiledHeaderMatch(m, f"{where}[{i}]") for i, m in enumerate(matchers))


def retry_policy(
    policy: xds.RetryPolicy, hedge: xds.HedgePolicy | None = None, *, where: str = "route"
) -> RetryPolicy:
    """The resilience policy equivalent to an xDS route's retry (and hedge) policy."""
    status_codes = frozenset(policy.retriable_status_codes)
    header_tests = tuple(
        m.matches for m in _compile_headers(policy.retriable_headers, f"{where}.retriable_headers")
    )
    retry_on = RetryOn(
        conditions=frozenset(c.value for c in policy.retry_on),
        retriable_status_codes=status_codes,
        retriable_headers=header_tests,
    )
    back_off = BackOff(
        base_interval_s=policy.back_off.base_interval_s,
        max_interval_s=policy.back_off.max_interval_s,
    )
    rate_limited = None
    if policy.rate_limited_back_off is not None:
        source = policy.rate_limited_back_off
        rate_limited = RateLimitedBackOff(
            reset_headers=tuple(
                ResetHeader(h.name.lower(), _RESET_FORMATS[h.format]) for h in source.reset_headers
            ),
            max_interval_s=source.max_interval_s,
        )
    return RetryPolicy(
        num_retries=policy.num_retries,
        retry_on=retry_on,
        per_try_timeout_s=policy.per_try_timeout_s,
        back_off=back_off,
        rate_limited_back_off=rate_limited,
        retry_previous_hosts=policy.retry_previous_hosts,
        # Eligibility of non-idempotent methods is decided per request (RouteRetry).
        retry_non_idempotent=False,
        hedge_on_per_try_timeout=hedge is not None and hedge.hedge_on_per_try_timeout,
    )


def route_retry(action: xds.RouteAction, *, where: str = "route") -> RouteRetry | None:
    """The compiled retry behaviour of a route; ``None`` when it has no retry policy."""
    policy = action.retry_policy
    if policy is None:
        return None
    matchers = _compile_headers(
        policy.retriable_request_headers, f"{where}.retry_policy.retriable_request_headers"
    )
    compiled = retry_policy(policy, action.hedge_policy, where=f"{where}.retry_policy")
    header_conditions = {xds.RetryOn.RETRIABLE_HEADERS, xds.RetryOn.ENVOY_RATELIMITED}
    return RouteRetry(
        policy=compiled,
        request_matchers=matchers,
        methods_explicit=any(m.name == METHOD_HEADER for m in matchers),
        single=RetryPolicy(num_retries=0, per_try_timeout_s=compiled.per_try_timeout_s),
        checks_answers=bool(policy.retry_on & header_conditions),
    )


def _positive(seconds: float | None) -> float | None:
    return seconds if seconds is not None and seconds > 0 else None


def _earliest(*limits: float | None) -> float | None:
    present = [s for s in limits if s is not None]
    return min(present) if present else None


def route_timeouts(action: xds.RouteAction) -> RouteTimeouts:
    """The route's HTTP timeout, gRPC deadline cap and per-try idle timeout."""
    http: float | None
    if action.request_timeout_s is None:
        http = ENVOY_DEFAULT_ROUTE_TIMEOUT_S
    else:
        http = _positive(action.request_timeout_s)
    stream_cap = None
    if action.max_stream_duration is not None:
        stream_cap = _positive(action.max_stream_duration.max_stream_duration_s)
    idle = None
    if action.retry_policy is not None:
        idle = _positive(action.retry_policy.per_try_idle_timeout_s)
    return RouteTimeouts(
        http_timeout_s=_earliest(http, stream_cap),
        grpc_max_timeout_s=_positive(action.timeout_s),
        per_try_idle_timeout_s=idle,
    )
