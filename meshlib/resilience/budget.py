"""Retry budgets: retries may add only a fraction of a cluster's load.

As Envoy's ``retry_budget`` (and Finagle's retry budget) define it: a retry may
start while ``active_retries < max(min_retry_concurrency, budget_percent% of
active_requests)``. Without a budget, Envoy's static ``max_retries`` threshold
caps concurrent retries instead. Running out is not an error of the call: the
runner returns the last try's answer and the refusal is counted here
(``retry_overflow``, Envoy's ``upstream_rq_retry_overflow``).

"Active requests" are logical calls in flight (wrapped in :meth:`track_request`),
so under 100% failure and enough concurrency the upstream sees at most
``1 + budget_percent/100`` tries per call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from meshlib.errors import ResilienceValueError
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics

_log = get_logger(__name__)

ENVOY_DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True, slots=True)
class BudgetStats:
    """A consistent snapshot of a budget's counters."""

    active_requests: int
    active_retries: int
    retries_started: int
    retry_overflow: int
    limit: float


class RetryBudget:
    """Per-cluster gate for retries (thread-safe; one lock, integer counters)."""

    def __init__(
        self,
        *,
        budget_percent: float | None = 20.0,
        min_retry_concurrency: int = 3,
        max_retries: int = ENVOY_DEFAULT_MAX_RETRIES,
        name: str = "",
        lock: threading.Lock | None = None,
    ) -> None:
        """``budget_percent=None`` means no budget: ``max_retries`` caps concurrent retries.

        ``lock``: shared with the cluster's other counters, so a call's first try can
        count itself everywhere in one step (:meth:`ClusterThresholds.start_call`)."""
        where = f"retry budget {name!r}" if name else "retry budget"
        if budget_percent is not None and not 0.0 <= budget_percent <= 100.0:
            raise ResilienceValueError(f"{where}: budget_percent {budget_percent} is not 0..100")
        if min_retry_concurrency < 0:
            raise ResilienceValueError(f"{where}: min_retry_concurrency is negative")
        if max_retries < 0:
            raise ResilienceValueError(f"{where}: max_retries is negative")
        self.name = name
        self.budget_percent = budget_percent
        self.min_retry_concurrency = min_retry_concurrency
        self.max_retries = max_retries
        self._lock = lock if lock is not None else threading.Lock()
        self._active_requests = 0
        self._active_retries = 0
        self._retries_started = 0
        self._retry_overflow = 0

    @classmethod
    def fixed(cls, max_retries: int = ENVOY_DEFAULT_MAX_RETRIES, *, name: str = "") -> RetryBudget:
        """Envoy's static ``max_retries`` threshold (no percentage budget)."""
        return cls(budget_percent=None, max_retries=max_retries, name=name)

    def _limit(self) -> float:
        if self.budget_percent is None:
            return float(self.max_retries)
        share = self.budget_percent / 100.0 * self._active_requests
        return max(float(self.min_retry_concurrency), share)

    @contextlib.contextmanager
    def track_request(self) -> Iterator[None]:
        """Count one logical call as active for the duration of the block."""
        self.request_started()
        try:
            yield
        finally:
            self.request_finished()

    def request_started(self) -> None:
        """One logical call became active (pair with :meth:`request_finished`)."""
        with self._lock:
            self._active_requests += 1

    def request_finished(self) -> None:
        with self._lock:
            self._active_requests -= 1

    def try_acquire_retry(self) -> bool:
        """Take a retry slot if the budget allows; count an overflow if not."""
        with self._lock:
            limit = self._limit()
            if self._active_retries < limit:
                self._active_retries += 1
                self._retries_started += 1
                return True
            self._retry_overflow += 1
            active_retries, active_requests = self._active_retries, self._active_requests
        resilience_metrics().budget_overflow(self.name or "retry_budget")
        _log.debug(
            "retry_budget_exhausted",
            budget=self.name,
            active_retries=active_retries,
            active_requests=active_requests,
            limit=limit,
        )
        return False

    def release_retry(self) -> None:
        """Give back a slot taken by :meth:`try_acquire_retry` once the retry ended."""
        with self._lock:
            if self._active_retries <= 0:
                raise RuntimeError(f"retry budget {self.name!r}: release without acquire")
            self._active_retries -= 1

    def stats(self) -> BudgetStats:
        with self._lock:
            return BudgetStats(
                active_requests=self._active_requests,
                active_retries=self._active_retries,
                retries_started=self._retries_started,
                retry_overflow=self._retry_overflow,
                limit=self._limit(),
            )
