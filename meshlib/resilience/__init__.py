"""Resilience: deadlines, retries with budgets and hedging, breakers, rate limits, faults.

Transport-independent mechanisms (one module each) that the httpx and gRPC
transports drive per request, plus decorators for application code. The
order they apply in, per request, is written once: a call plan
(:mod:`meshlib.resilience.call_plan`, compiled per route and cluster, its
protocol's try bound as an adapter) run by a sync and an async driver
(:mod:`meshlib.resilience.call`, the only code that waits)::

    deadline -> fault / local rate limit (filter chain order)
      -> breaker (acquire) -> budget + admission (max_requests, max_connections /
         pending) -> first try (pick, send, classify, report); only if it is
         retriable: run_with_retries / run_hedged (budget, back-off, previous hosts)

Map: :mod:`.deadline`; :mod:`.fault`, :mod:`.rate_limit` (stages, listed per route
by :mod:`.route_resilience`); :mod:`.breaker`, :mod:`.sliding_window`;
:mod:`.breaker_thresholds`, :mod:`.admission`; :mod:`.retry`, :mod:`.conditions`,
:mod:`.backoff`, :mod:`.budget`,
:mod:`.hedging`; :mod:`.call_plan` and :mod:`.call` (the lifecycle and its two
drivers); :mod:`.decorators`, :mod:`.fallback`, :mod:`.degraded` (for
application code); :mod:`.grpc_codes`.

The xDS side: :mod:`~meshlib.resilience.xds_route`, :mod:`~meshlib.resilience.xds_filters`
and :mod:`~meshlib.resilience.xds_cluster` map decoded RDS / LDS / CDS models to
these policies; :class:`ResilienceCompiler` compiles a service's routes once per
snapshot and :class:`ClusterResilienceRegistry` keeps per-cluster state across
snapshots.
"""

from meshlib.resilience.backoff import BackOff, RateLimitedBackOff, ResetFormat, ResetHeader
from meshlib.resilience.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    WindowType,
    breakers,
)
from meshlib.resilience.breaker_thresholds import ClusterThresholds, Threshold
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.call import async_resilient_call, resilient_call
from meshlib.resilience.conditions import FailureKind, Outcome, RetryOn, is_idempotent_method
from meshlib.resilience.deadline import (
    Deadline,
    check_deadline,
    current_deadline,
    deadline_from_headers,
    deadline_headers,
    deadline_scope,
    decode_grpc_timeout,
    encode_grpc_timeout,
    incoming_deadline_scope,
    remaining_time,
)
from meshlib.resilience.decorators import circuit_breaker, retry, timeout
from meshlib.resilience.degraded import DegradedServices, degraded_services
from meshlib.resilience.fallback import fallback, fallback_cause
from meshlib.resilience.fault import FaultAbort, FaultDelay, FaultInjector, FaultPolicy
from meshlib.resilience.grpc_codes import GrpcCode
from meshlib.resilience.hedging import async_run_hedged, run_hedged
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.resilience.retry import (
    Attempt,
    FirstTry,
    RetryPolicy,
    async_run_with_retries,
    run_with_retries,
)
from meshlib.resilience.route_resilience import (
    ResilienceCompiler,
    RouteResilience,
    ServiceResilience,
)
from meshlib.resilience.xds_cluster import ClusterResilience, ClusterResilienceRegistry

__all__ = [
    "Attempt",
    "BackOff",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerState",
    "CircuitBreaker",
    "ClusterResilience",
    "ClusterResilienceRegistry",
    "ClusterThresholds",
    "Deadline",
    "DegradedServices",
    "FailureKind",
    "FaultAbort",
    "FaultDelay",
    "FaultInjector",
    "FaultPolicy",
    "FirstTry",
    "GrpcCode",
    "Outcome",
    "RateLimitedBackOff",
    "ResetFormat",
    "ResetHeader",
    "ResilienceCompiler",
    "RetryBudget",
    "RetryOn",
    "RetryPolicy",
    "RouteResilience",
    "ServiceResilience",
    "Threshold",
    "TokenBucket",
    "WindowType",
    "async_resilient_call",
    "async_run_hedged",
    "async_run_with_retries",
    "breakers",
    "check_deadline",
    "circuit_breaker",
    "current_deadline",
    "deadline_from_headers",
    "deadline_headers",
    "deadline_scope",
    "decode_grpc_timeout",
    "degraded_services",
    "encode_grpc_timeout",
    "fallback",
    "fallback_cause",
    "incoming_deadline_scope",
    "is_idempotent_method",
    "remaining_time",
    "resilient_call",
    "retry",
    "run_hedged",
    "run_with_retries",
    "timeout",
]
