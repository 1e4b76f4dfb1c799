"""DestinationRule ``connectionPool`` -> circuit-breaker thresholds and connect timeout.

As Istio maps it: tcp.maxConnections -> max_connections,
http.http1MaxPendingRequests -> max_pending_requests, http.http2MaxRequests ->
max_requests, http.maxRetries -> max_retries, tcp.connectTimeout ->
connect_timeout. Once a cluster has thresholds at all, a limit left unset (or 0,
which Istio reads as unset) is Istio's "unlimited" (2^32-1), not Envoy's 1024
(or 3 retries). The retry budget (annotation ``meshlib.dev/retry-budget``, no
Istio field) goes into the same DEFAULT-priority thresholds; Envoy then uses it
instead of max_retries.

A cluster with neither a connection pool nor a retry budget carries no
circuit_breakers: each client applies its own defaults. gRPC reads only
max_requests (gRFC A32) and ignores the rest.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.type.v3 import percent_pb2

from controlplane.destination_policy import EffectivePolicy
from controlplane.traffic_model import ConnectionPoolSettings, RetryBudget
from controlplane.translate.common import duration
from controlplane.translate.errors import TranslationError

UNLIMITED = 2**32 - 1  # Istio's default for every threshold


def apply_circuit_breakers(cluster: cluster_pb2.Cluster, policy: EffectivePolicy) -> None:
    pool = policy.connection_pool
    budget = policy.extensions.retry_budget
    if pool is not None and pool.tcp is not None and pool.tcp.connect_timeout_s is not None:
        if pool.tcp.connect_timeout_s <= 0:
            raise TranslationError(
                f"{policy.where}: connectionPool.tcp.connectTimeout must be above 0"
            )
        cluster.connect_timeout.CopyFrom(duration(pool.tcp.connect_timeout_s))
    if pool is None and budget is None:
        return
    thresholds = _thresholds(pool)
    if budget is not None:
        thresholds.retry_budget.CopyFrom(_retry_budget(budget, policy.where))
    cluster.circuit_breakers.CopyFrom(circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]))


def _thresholds(
    pool: ConnectionPoolSettings | None,
) -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    tcp = pool.tcp if pool is not None else None
    http = pool.http if pool is not None else None
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.RoutingPriority.DEFAULT, track_remaining=True
    )
    thresholds.max_connections.value = _limit(tcp.max_connections if tcp else None)
    thresholds.max_pending_requests.value = _limit(
        http.http1_max_pending_requests if http else None
    )
    thresholds.max_requests.value = _limit(http.http2_max_requests if http else None)
    thresholds.max_retries.value = _limit(http.max_retries if http else None)
    return thresholds


def _limit(value: int | None) -> int:
    """Istio: unset or 0 (or less) means unlimited."""
    return value if value is not None and value > 0 else UNLIMITED


def _retry_budget(
    budget: RetryBudget, where: str
) -> circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget:
    if not 0 <= budget.budget_percent <= 100 or budget.min_retry_concurrency < 0:
        raise TranslationError(
            f"{where}: meshlib.dev/retry-budget needs budget_percent within 0..100 and "
            f"min_retry_concurrency >= 0, got {budget.budget_percent} and "
            f"{budget.min_retry_concurrency}"
        )
    result = circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget(
        budget_percent=percent_pb2.Percent(value=budget.budget_percent)
    )
    result.min_retry_concurrency.value = budget.min_retry_concurrency
    return result
