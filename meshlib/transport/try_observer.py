"""The per-try observer: how every try to an endpoint is reported, written once.

A :class:`TryObserver` is bound once per plan (every route compiles one, shadows
included): the cluster's load reporter (least-request, outlier
detection, ORCA-style load reports), the request metrics with the protocol's
labels, and room for a trace span. :meth:`TryObserver.start` is called with the
endpoint the pick chose and returns that try's done hook (:class:`TryReport`),
as grpc-go's balancers return a ``Done`` callback from ``Pick``; the transport
calls :meth:`TryReport.finished` (an answer) or :meth:`TryReport.failed` (no
answer) exactly once. HTTP and gRPC differ only in what they bind: how a status
reads as an outlier-detection outcome and how a try is recorded in metrics.

Adding a per-try concern (a trace span, a load report field) is a change here,
not in each transport or each sync / async twin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, Generic, TypeVar

from meshlib.balancing.picker import LoadReporter
from meshlib.balancing.picker import Outcome as LbOutcome
from meshlib.observability.metrics import ClientMetrics
from meshlib.xds_client.resources import Endpoint

#: What a try's metrics labels are read from (HTTP: the request; gRPC: the method).
C = TypeVar("C")
#: How an answered try's status is given (HTTP: int; gRPC: ``grpc.StatusCode | None``).
S = TypeVar("S")

#: Record one try: (seconds, call, cluster, endpoint, status or None, error or None).
RecordTry = Callable[[float, C, str, Endpoint, S | None, BaseException | None], None]

_perf_counter: Final = time.perf_counter
_NOTHING_QUICK: Final[Mapping[Any, LbOutcome]] = {}


class TryObserver(Generic[C, S]):
    """Observes the tries of one plan to one cluster (see the module doc).

    ``quick``: the outcomes a status alone decides (looked up, not computed: the
    common answers cost no call); ``outcome_of`` decides the others. ``usual``: the
    status most tries answer (gRPC OK, HTTP 200), matched by identity before the
    lookup (hashing a ``grpc.StatusCode`` is a Python-level call).
    """

    __slots__ = (
        "cluster",
        "error_outcome",
        "metrics",
        "outcome_of",
        "quick",
        "record",
        "reporter",
        "start",
        "usual",
        "usual_outcome",
    )

    def __init__(
        self,
        reporter: LoadReporter,
        cluster: str,
        *,
        outcome_of: Callable[[S, str | None], LbOutcome],
        error_outcome: Callable[[BaseException], LbOutcome],
        quick: Mapping[S, LbOutcome] = _NOTHING_QUICK,
        usual: S | None = None,
        metrics: ClientMetrics | None = None,
        record: RecordTry[C, S] | None = None,
    ) -> None:
        self.reporter = reporter
        self.cluster = cluster
        self.outcome_of = outcome_of
        self.error_outcome = error_outcome
        self.quick = quick
        self.usual = usual
        self.usual_outcome: LbOutcome | None = None if usual is None else quick.get(usual)
        #: None: no request metrics (shadow traffic).
        self.metrics = metrics if record is not None else None
        self.record = record
        #: ``start(endpoint, call)``: a try to ``endpoint`` starts now; its done hook
        #: (bound here: the try pays one call for it, not two).
        self.start: Callable[[Endpoint, C], TryReport[C, S]] = partial(TryReport, self)


class TryReport(Generic[C, S]):
    """One try's done hook; call :meth:`finished` or :meth:`failed` once."""

    __slots__ = ("call", "endpoint", "observer", "span", "started")

    def __init__(self, observer: TryObserver[C, S], endpoint: Endpoint, call: C) -> None:
        observer.reporter.call_started(endpoint)
        self.observer = observer
        self.endpoint = endpoint
        self.call = call
        #: Room for the try's trace span (the tracing seam).
        self.span: object | None = None
        self.started = _perf_counter()

    def finished(self, status: S, details: str | None = None) -> None:
        """The try got an answer with ``status`` (gRPC: its details help classify it)."""
        elapsed = _perf_counter() - self.started
        observer = self.observer
        outcome = observer.usual_outcome if status is observer.usual else None
        if outcome is None:
            outcome = observer.quick.get(status)
        if outcome is None:
            outcome = observer.outcome_of(status, details)
        observer.reporter.call_finished(self.endpoint, outcome, elapsed)
        metrics = observer.metrics
        if metrics is not None and metrics.active:  # no SDK: skip building the labels
            assert observer.record is not None
            observer.record(elapsed, self.call, observer.cluster, self.endpoint, status, None)

    def failed(self, error: BaseException) -> None:
        """The try raised ``error`` instead of answering."""
        elapsed = _perf_counter() - self.started
        observer = self.observer
        observer.reporter.call_finished(self.endpoint, observer.error_outcome(error), elapsed)
        metrics = observer.metrics
        if metrics is not None and metrics.active:
            assert observer.record is not None
            observer.record(elapsed, self.call, observer.cluster, self.endpoint, None, error)


__all__ = ["RecordTry", "TryObserver", "TryReport"]
