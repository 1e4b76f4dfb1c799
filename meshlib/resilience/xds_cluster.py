"""Per-cluster resilience state from CDS: thresholds, retry budget, breaker, degraded.

A :class:`ClusterResilience` is the runtime object the data path holds for a
cluster. It outlives snapshot rebuilds (EDS changes, route changes): the
:class:`ClusterResilienceRegistry` hands back the same object while the
cluster's ``circuit_breakers`` stay equal, so in-flight counts and the budget's
accounting are not reset; a changed config gets a fresh object (tries in
flight release their slots on the old one).

Mapping (Envoy ``circuit_breakers``, DEFAULT priority):

- ``max_connections``, ``max_pending_requests``, ``max_requests`` as they are
  (Envoy's 1024 when the cluster sets none; the control plane writes Istio's
  "unlimited" 2^32-1 for limits a DestinationRule leaves unset).
- ``retry_budget`` when the cluster sets one. Otherwise meshlib turns a budget
  on by default (20% of active requests, at least 3 concurrent retries),
  replacing Envoy's default static ``max_retries: 3``; an explicit
  ``max_retries`` other than Envoy's default and Istio's unlimited (Istio
  ``connectionPool.http.maxRetries``) is honoured as Envoy's static cap instead.
- ``degraded`` (ServiceEntry annotation ``meshlib.dev/degraded``) marks the
  service in :data:`~meshlib.resilience.degraded.degraded_services`, so every
  ``@fallback(service=...)`` answers from its handler.
- The failure-rate breaker (resilience4j states) has no xDS field: register one
  under the cluster name or the service name (``HOST:PORT``) in
  :data:`~meshlib.resilience.breaker.breakers` and the transports consult it.
"""

from __future__ import annotations

import threading
from typing import Final

from meshlib.observability.logging import get_logger
from meshlib.resilience.admission import Admission
from meshlib.resilience.breaker import BreakerRegistry, CircuitBreaker, breakers
from meshlib.resilience.breaker_thresholds import ClusterThresholds
from meshlib.resilience.budget import ENVOY_DEFAULT_MAX_RETRIES, RetryBudget
from meshlib.resilience.degraded import DegradedServices, degraded_services
from meshlib.xds_client import resources as xds
from meshlib.xds_client.cluster_policies import DEFAULT_CIRCUIT_BREAKERS

_log = get_logger(__name__)

DEFAULT_BUDGET_PERCENT: Final = 20.0
DEFAULT_MIN_RETRY_CONCURRENCY: Final = 3
ISTIO_UNLIMITED: Final = 2**32 - 1


def service_of_cluster(cluster: str) -> str | None:
    """``HOST:PORT`` of a mesh cluster name ``outbound|PORT|SUBSET|HOST`` (else ``None``)."""
    parts = cluster.split("|")
    if len(parts) != 4 or not parts[1].isdigit() or not parts[3]:
        return None
    return f"{parts[3]}:{parts[1]}"


def cluster_thresholds(cluster: str, config: xds.CircuitBreakerThresholds) -> ClusterThresholds:
    """The thresholds (and retry budget) of one cluster's ``circuit_breakers``."""
    budget_percent: float | None = DEFAULT_BUDGET_PERCENT
    min_concurrency = DEFAULT_MIN_RETRY_CONCURRENCY
    if config.retry_budget is not None:
        budget_percent = config.retry_budget.budget_percent
        min_concurrency = config.retry_budget.min_retry_concurrency
    elif config.max_retries not in (ENVOY_DEFAULT_MAX_RETRIES, ISTIO_UNLIMITED):
        budget_percent = None  # the operator set a static cap: honour it as Envoy does
    return ClusterThresholds(
        cluster,
        max_connections=config.max_connections,
        max_pending_requests=config.max_pending_requests,
        max_requests=config.max_requests,
        max_retries=config.max_retries,
        retry_budget_percent=budget_percent,
        min_retry_concurrency=min_concurrency,
    )


class ClusterResilience:
    """One cluster's resilience runtime: thresholds, retry budget, optional breaker."""

    __slots__ = ("_breakers", "admission", "config", "name", "service", "thresholds")

    def __init__(
        self,
        name: str,
        config: xds.CircuitBreakerThresholds = DEFAULT_CIRCUIT_BREAKERS,
        *,
        breaker_registry: BreakerRegistry | None = None,
    ) -> None:
        self.name = name
        self.service = service_of_cluster(name)
        self.config = config
        self.thresholds = cluster_thresholds(name, config)
        self.admission = Admission(self.thresholds)
        self._breakers = breaker_registry if breaker_registry is not None else breakers

    @property
    def budget(self) -> RetryBudget:
        """The cluster's retry budget (or static ``max_retries`` gate)."""
        return self.thresholds.retries

    @property
    def breakers(self) -> BreakerRegistry:
        """The registry :meth:`breaker` looks in."""
        return self._breakers

    @property
    def breaker_generation(self) -> int:
        """Moves whenever a breaker is registered (:meth:`breaker` may answer otherwise)."""
        return self._breakers.generation

    def breaker(self) -> CircuitBreaker | None:
        """The failure-rate breaker registered for this cluster or its service, if any."""
        found = self._breakers.find(self.name)
        if found is None and self.service is not None:
            found = self._breakers.find(self.service)
        return found


class ClusterResilienceRegistry:
    """Cluster name -> :class:`ClusterResilience`, updated from CDS (thread-safe)."""

    def __init__(
        self,
        *,
        breaker_registry: BreakerRegistry | None = None,
        degraded: DegradedServices | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clusters: dict[str, ClusterResilience] = {}
        self._breakers = breaker_registry if breaker_registry is not None else breakers
        self._degraded = degraded if degraded is not None else degraded_services

    def update(self, resource: xds.ClusterResource) -> ClusterResilience:
        """The runtime for ``resource``: the current one while its thresholds are equal."""
        name = resource.name
        with self._lock:
            current = self._clusters.get(name)
            if current is None or current.config != resource.circuit_breakers:
                if current is not None:
                    _log.info("cluster_thresholds_changed", cluster=name)
                current = ClusterResilience(
                    name, resource.circuit_breakers, breaker_registry=self._breakers
                )
                self._clusters[name] = current
        if current.service is not None:
            self._degraded.mark(current.service, resource.degraded)
        return current

    def get(self, name: str) -> ClusterResilience:
        """The runtime of ``name`` (with default thresholds if CDS has not named it yet)."""
        found = self._clusters.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._clusters.get(name)
            if found is None:
                found = ClusterResilience(name, breaker_registry=self._breakers)
                self._clusters[name] = found
            return found

    def remove(self, name: str) -> None:
        """Forget a cluster CDS no longer has (a later one starts afresh)."""
        with self._lock:
            self._clusters.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._clusters)
