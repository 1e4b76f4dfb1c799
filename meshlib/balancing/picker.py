"""What the data path asks of a load balancer, and what it tells it back.

A picker is built from one EDS update and replaced (by reference) on the
next; its structure never changes after construction. State that must outlive
a rebuild (active requests per endpoint, outlier ejections) lives in the
cluster's :class:`LoadReporter`, which the transport tells about every call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from meshlib.errors import NoHealthyEndpointError
from meshlib.xds_client.resources import Endpoint


@dataclass(frozen=True, slots=True)
class PickContext:
    """What one pick may depend on.

    ``request_hash``: the route's hash policy result (ring_hash, maglev), None
    when the route has none (hash policies then use a random hash, as Envoy
    and gRPC do). ``excluded``: authorities (``host:port``) to avoid when
    another endpoint exists — the hosts a retry already tried.
    ``host_selection_retry_max_attempts``: how many times the balancer re-runs
    its own choice before scanning for any endpoint not excluded (Envoy's
    field of the same name; the scan guarantees another endpoint when one
    exists).
    """

    request_hash: int | None = None
    excluded: frozenset[str] = frozenset()
    host_selection_retry_max_attempts: int = 1


NO_PICK_CONTEXT = PickContext()


class Picker(Protocol):
    """Chooses the endpoint for one request; raises NoHealthyEndpointError."""

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint: ...


class Outcome(enum.Enum):
    """How one call to an endpoint ended, as outlier detection classifies it."""

    SUCCESS = "success"
    ERROR_5XX = "5xx"  # an HTTP 5xx other than a gateway error (gRPC: INTERNAL, UNKNOWN, ...)
    GATEWAY_ERROR = "gateway_error"  # 502, 503, 504 (gRPC: UNAVAILABLE)
    LOCAL_ORIGIN_FAILURE = "local_origin_failure"  # connect failure, reset, timeout


class LoadReporter(Protocol):
    """Per-cluster feedback sink; lives across picker rebuilds."""

    def call_started(self, endpoint: Endpoint) -> None: ...

    def call_finished(self, endpoint: Endpoint, outcome: Outcome, latency_s: float) -> None: ...


class NoopReporter:
    """For clusters whose policy needs no feedback."""

    __slots__ = ()

    def call_started(self, endpoint: Endpoint) -> None:
        pass

    def call_finished(self, endpoint: Endpoint, outcome: Outcome, latency_s: float) -> None:
        pass


NOOP_REPORTER = NoopReporter()


class FailingPicker:
    """A picker for a cluster that cannot take traffic; says why on every pick."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint:
        raise NoHealthyEndpointError(self.reason)
