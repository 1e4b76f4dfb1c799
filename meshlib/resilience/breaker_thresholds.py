"""Envoy's circuit-breaker thresholds per cluster: concurrency caps that fail fast.

``max_connections``, ``max_pending_requests`` and ``max_requests`` are counters:
a transport holds a slot for as long as the connection / queued request /
request lives (``with thresholds.request(): ...``) and gets a
:class:`CircuitBreakerOverflow` naming the threshold when it is full. Retries
are gated by the cluster's :class:`RetryBudget` (``max_retries`` when no
percentage budget is set, as Envoy does); the retry runner asks it and
treats a refusal as "no more retries", not as an error. Defaults are Envoy's
(1024 / 1024 / 1024 / 3) except that meshlib turns a 20% retry budget on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from meshlib.errors import CircuitBreakerOverflow, ResilienceValueError
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.budget import ENVOY_DEFAULT_MAX_RETRIES, RetryBudget

_log = get_logger(__name__)

ENVOY_DEFAULT_LIMIT = 1024


class Threshold:
    """One counted limit (thread-safe); ``hold()`` raises when it is full."""

    def __init__(
        self, cluster: str, name: str, limit: int, lock: threading.Lock | None = None
    ) -> None:
        if limit < 0:
            raise ResilienceValueError(f"cluster {cluster!r}: {name} {limit} is negative")
        self.cluster = cluster
        self.name = name
        self.limit = limit
        self._lock = lock if lock is not None else threading.Lock()
        self._count = 0
        self._overflows = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def overflows(self) -> int:
        """How many acquisitions failed (Envoy's ``upstream_cx_overflow`` and friends)."""
        return self._overflows

    def try_acquire(self) -> bool:
        with self._lock:
            if self._count >= self.limit:
                self._overflows += 1
                return False
            self._count += 1
            return True

    def try_take(self) -> bool:
        """Take a slot if one is free now; no overflow is counted (the caller queues)."""
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            return True

    def acquire(self) -> None:
        """Take a slot or raise :class:`CircuitBreakerOverflow` naming this threshold."""
        if not self.try_acquire():
            _log.info(
                "circuit_breaker_overflow",
                cluster=self.cluster,
                threshold=self.name,
                limit=self.limit,
            )
            resilience_metrics().breaker_rejection(self.cluster, self.name)
            raise CircuitBreakerOverflow(
                f"cluster {self.cluster!r}: {self.name} ({self.limit}) reached, failing fast",
                cluster=self.cluster,
                threshold=self.name,
                limit=self.limit,
            )

    def release(self) -> None:
        with self._lock:
            if self._count <= 0:
                raise RuntimeError(f"cluster {self.cluster!r}: {self.name} released more than held")
            self._count -= 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


class ClusterThresholds:
    """One cluster's circuit-breaker thresholds (Envoy ``circuit_breakers``, DEFAULT priority)."""

    def __init__(
        self,
        cluster: str,
        *,
        max_connections: int = ENVOY_DEFAULT_LIMIT,
        max_pending_requests: int = ENVOY_DEFAULT_LIMIT,
        max_requests: int = ENVOY_DEFAULT_LIMIT,
        max_retries: int = ENVOY_DEFAULT_MAX_RETRIES,
        retry_budget_percent: float | None = 20.0,
        min_retry_concurrency: int = 3,
    ) -> None:
        self.cluster = cluster
        # One lock for every counter of the cluster: a call's first try takes its
        # slots and counts itself in the budget in one step (start_call / end_call).
        self.lock = lock = threading.Lock()
        self.connections = Threshold(cluster, "max_connections", max_connections, lock)
        self.pending_requests = Threshold(
            cluster, "max_pending_requests", max_pending_requests, lock
        )
        self.requests = Threshold(cluster, "max_requests", max_requests, lock)
        self.retries = RetryBudget(
            budget_percent=retry_budget_percent,
            min_retry_concurrency=min_retry_concurrency,
            max_retries=max_retries,
            name=cluster,
            lock=lock,
        )

    def start_call(self) -> bool:
        """A call and its first try, counted in one step: active in the retry budget,
        holding a ``max_requests`` and a ``max_connections`` slot. False, with nothing
        taken or counted, when a slot is full (the caller then goes the general way,
        which fails fast or queues as pending). Pair with :meth:`end_call`."""
        requests, connections = self.requests, self.connections
        with self.lock:
            if requests._count >= requests.limit or connections._count >= connections.limit:
                return False
            requests._count += 1
            connections._count += 1
            self.retries._active_requests += 1
            return True

    def end_call(self) -> None:
        """The call ended with its first try: undo :meth:`start_call` in one step."""
        requests, connections = self.requests, self.connections
        with self.lock:
            if requests._count <= 0 or connections._count <= 0:
                raise RuntimeError(f"cluster {self.cluster!r}: a call ended more than started")
            requests._count -= 1
            connections._count -= 1
            self.retries._active_requests -= 1

    def connection(self) -> contextlib.AbstractContextManager[None]:
        """Hold a ``max_connections`` slot while a connection is open."""
        return self.connections.hold()

    def pending(self) -> contextlib.AbstractContextManager[None]:
        """Hold a ``max_pending_requests`` slot while a request waits for a connection."""
        return self.pending_requests.hold()

    def request(self) -> contextlib.AbstractContextManager[None]:
        """Hold a ``max_requests`` slot while a request (each try) is in flight."""
        return self.requests.hold()

    @contextlib.contextmanager
    def retry(self) -> Iterator[None]:
        """Hold a retry slot, raising :class:`CircuitBreakerOverflow` (``max_retries``) if none.

        The retry runner does not use this (it treats a refusal as the end of
        retrying); it is for code that wants the overflow as an error.
        """
        if not self.retries.try_acquire_retry():
            limit = int(self.retries.stats().limit)
            raise CircuitBreakerOverflow(
                f"cluster {self.cluster!r}: max_retries ({limit}) reached",
                cluster=self.cluster,
                threshold="max_retries",
                limit=limit,
            )
        try:
            yield
        finally:
            self.retries.release_retry()
