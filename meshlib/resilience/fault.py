"""Fault injection decisions, as Envoy's HTTP fault filter makes them.

A :class:`FaultPolicy` holds a delay and/or an abort, each with a percentage
(per million, Envoy's FractionalPercent), an optional request predicate (the
route's header matchers: only requests that opt in, e.g. ``x-testing: true``,
are faulted) and ``max_active_faults``. With ``headers_enabled`` the caller can
ask for faults itself with Envoy's headers:

- ``x-envoy-fault-delay-request``: delay in milliseconds;
- ``x-envoy-fault-abort-request``: HTTP status in [200, 600);
- ``x-envoy-fault-abort-grpc-request``: gRPC status (ignored when the HTTP one is set);
- ``x-envoy-fault-delay-request-percentage`` / ``x-envoy-fault-abort-request-percentage``:
  percent of such requests to fault, capped by the configured percentage
  (100% when only headers are enabled).

A delay without ``fixed_delay_s`` or an abort with ``header_controlled`` (Envoy's
``header_delay`` / ``header_abort``) takes its value from these headers only.

Invalid header values are ignored, as Envoy does. The delay comes first, then
the abort. A delay never outlasts the call's deadline: it is cut there and the
call ends with :class:`~meshlib.errors.DeadlineExceeded` (:func:`delay_within`);
an async delay is cancelled with its task. While a fault is active (from the
decision to the end of the request) it counts toward ``max_active_faults``;
beyond it no fault is injected. The random source is injectable (seed it in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from meshlib.errors import DeadlineExceeded, InjectedFaultError, ResilienceValueError
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.deadline import Deadline, Headers, LowerHeaders, current_deadline

_log = get_logger(__name__)

PER_MILLION = 1_000_000
DELAY_HEADER = "x-envoy-fault-delay-request"
DELAY_PERCENT_HEADER = "x-envoy-fault-delay-request-percentage"
ABORT_HEADER = "x-envoy-fault-abort-request"
ABORT_GRPC_HEADER = "x-envoy-fault-abort-grpc-request"
ABORT_PERCENT_HEADER = "x-envoy-fault-abort-request-percentage"


def per_million(percent: float) -> int:
    """A percentage (0..100, fractions allowed) as parts per million."""
    if not 0.0 <= percent <= 100.0:
        raise ResilienceValueError(f"fault percentage {percent} is not 0..100")
    return round(percent * PER_MILLION / 100.0)


@dataclass(frozen=True, slots=True)
class FaultDelay:
    """A delay; ``fixed_delay_s=None`` takes it from ``x-envoy-fault-delay-request`` only."""

    fixed_delay_s: float | None = None
    per_million: int = PER_MILLION

    def __post_init__(self) -> None:
        if self.fixed_delay_s is not None and self.fixed_delay_s < 0:
            raise ResilienceValueError("fault delay: fixed_delay must be >= 0")
        if not 0 <= self.per_million <= PER_MILLION:
            raise ResilienceValueError("fault delay: percentage is not 0..100%")


@dataclass(frozen=True, slots=True)
class FaultAbort:
    """Abort with ``http_status``, ``grpc_status`` or the status the abort headers
    name (``header_controlled``, Envoy's ``header_abort``): exactly one."""

    http_status: int | None = None
    grpc_status: int | None = None
    header_controlled: bool = False
    per_million: int = PER_MILLION

    def __post_init__(self) -> None:
        http, grpc = self.http_status is not None, self.grpc_status is not None
        if http + grpc + self.header_controlled != 1:
            raise ResilienceValueError(
                "fault abort: set exactly one of http_status, grpc_status, header_controlled"
            )
        if self.http_status is not None and not 200 <= self.http_status < 600:
            raise ResilienceValueError(f"fault abort: http_status {self.http_status} not 200..599")
        if not 0 <= self.per_million <= PER_MILLION:
            raise ResilienceValueError("fault abort: percentage is not 0..100%")


def _cut_at(delay_s: float, deadline: Deadline | None) -> float | None:
    """The seconds left before ``deadline`` (default: the current one) when the delay
    would outlast it, else None."""
    deadline = deadline if deadline is not None else current_deadline()
    if deadline is None:
        return None
    left = deadline.remaining()
    return left if left < delay_s else None


def _cut_error(delay_s: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"deadline exceeded during the injected fault delay of {delay_s:g}s", timeout_s=0.0
    )


def delay_within(
    delay_s: float, deadline: Deadline | None = None, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Sleep an injected delay, but not past ``deadline`` (default: the current one):
    there it raises :class:`DeadlineExceeded`, as grpcio's fault filter ends the call."""
    cut = _cut_at(delay_s, deadline)
    sleep(delay_s if cut is None else cut)
    if cut is not None:
        raise _cut_error(delay_s)


async def async_delay_within(
    delay_s: float,
    deadline: Deadline | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """The async twin of :func:`delay_within` (cancelled with its task)."""
    cut = _cut_at(delay_s, deadline)
    await sleep(delay_s if cut is None else cut)
    if cut is not None:
        raise _cut_error(delay_s)


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    applies_to: Callable[[Mapping[str, str]], bool] | None = None
    headers_enabled: bool = False
    max_active_faults: int | None = None


@dataclass(frozen=True, slots=True)
class FaultDecision:
    delay_s: float = 0.0
    abort: FaultAbort | None = None

    @property
    def is_fault(self) -> bool:
        return self.delay_s > 0 or self.abort is not None

    def error(self) -> InjectedFaultError | None:
        if self.abort is None:
            return None
        if self.abort.http_status is not None:
            status = f"HTTP {self.abort.http_status}"
        else:
            status = f"gRPC status {self.abort.grpc_status}"
        return InjectedFaultError(
            f"fault injection aborted the request with {status}",
            http_status=self.abort.http_status,
            grpc_status=self.abort.grpc_status,
        )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


#: The headers that can make a fault happen (the percentage headers only narrow one).
_TRIGGER_HEADERS: Final = frozenset({DELAY_HEADER, ABORT_HEADER, ABORT_GRPC_HEADER})
#: The decision for a request no fault applies to (shared: compare by identity).
NO_FAULT: Final = FaultDecision()


def _may_trigger(headers: Headers) -> bool:
    """Whether ``headers`` carry a fault header (True when they cannot be read cheaply)."""
    if isinstance(headers, dict):
        return any(name.lower() in _TRIGGER_HEADERS for name in headers)
    if isinstance(headers, Mapping):  # e.g. httpx.Headers: case-insensitive lookups
        return any(name in headers for name in _TRIGGER_HEADERS)
    return True


def _lower(headers: Headers) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k.lower(): (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in items}


class FaultInjector:
    """Decides and applies a route's faults; counts what it injected."""

    def __init__(
        self, policy: FaultPolicy, *, rng: random.Random | None = None, name: str = ""
    ) -> None:
        self.policy = policy
        self.name = name
        self.rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self.active = 0
        self.delays_injected = 0
        self.aborts_injected = 0
        self.faults_overflow = 0
        delay, abort = policy.delay, policy.abort
        #: Faults come only from request headers (Envoy's header_delay / header_abort, or
        #: x-envoy-fault-* enabled): a request without one is decided without parsing.
        self._header_triggered = (delay is None or delay.fixed_delay_s is None) and (
            abort is None or abort.header_controlled
        )

    @property
    def trigger_headers(self) -> frozenset[str] | None:
        """The (lower-case) header names one of which a request must carry to be
        faulted; None when any request may be (a configured percentage)."""
        return _TRIGGER_HEADERS if self._header_triggered else None

    def _roll(self, chance_per_million: int) -> bool:
        return self.rng.randrange(PER_MILLION) < chance_per_million

    def _delay(self, headers: Mapping[str, str]) -> float:
        configured = self.policy.delay
        delay_s = configured.fixed_delay_s if configured is not None else None
        chance = configured.per_million if configured is not None else PER_MILLION
        by_header = configured is not None and configured.fixed_delay_s is None
        if self.policy.headers_enabled or by_header:
            header_ms = _int_header(headers, DELAY_HEADER)
            if header_ms is not None:
                delay_s = header_ms / 1000.0
                percent = _int_header(headers, DELAY_PERCENT_HEADER)
                if percent is not None:
                    chance = min(chance, per_million(min(percent, 100)))
        if delay_s is None or not self._roll(chance):
            return 0.0
        return delay_s

    def _abort(self, headers: Mapping[str, str]) -> FaultAbort | None:
        configured = self.policy.abort
        chance = configured.per_million if configured is not None else PER_MILLION
        by_header = configured is not None and configured.header_controlled
        abort = None if configured is None or by_header else configured
        if self.policy.headers_enabled or by_header:
            http = _int_header(headers, ABORT_HEADER)
            grpc = _int_header(headers, ABORT_GRPC_HEADER)
            if http is not None and not 200 <= http < 600:
                http = None
            if http is not None or grpc is not None:
                chance_header = _int_header(headers, ABORT_PERCENT_HEADER)
                if chance_header is not None:
                    chance = min(chance, per_million(min(chance_header, 100)))
                grpc_status = None if http is not None else grpc
                abort = FaultAbort(http_status=http, grpc_status=grpc_status, per_million=chance)
        if abort is None or not self._roll(chance):
            return None
        return abort

    def decide(self, headers: Headers) -> FaultDecision:
        """The faults for one request (random draws only; nothing is counted)."""
        if self._header_triggered:
            if type(headers) is LowerHeaders:  # the transports' headers: one set test
                if _TRIGGER_HEADERS.isdisjoint(headers):
                    return NO_FAULT
            elif not _may_trigger(headers):
                return NO_FAULT
        lowered = _lower(headers)
        if self.policy.applies_to is not None and not self.policy.applies_to(lowered):
            return FaultDecision()
        return FaultDecision(self._delay(lowered), self._abort(lowered))

    def _admit(self, decision: FaultDecision) -> FaultDecision:
        if not decision.is_fault:
            return decision
        with self._lock:
            limit = self.policy.max_active_faults
            if limit is not None and self.active >= limit:
                self.faults_overflow += 1
                return FaultDecision()
            self.active += 1
            self.delays_injected += decision.delay_s > 0
            self.aborts_injected += decision.abort is not None
        metrics = resilience_metrics()
        if decision.delay_s > 0:
            metrics.fault(self.name or "fault", "delay")
        if decision.abort is not None:
            metrics.fault(self.name or "fault", "abort")
        _log.info(
            "fault_injected",
            name=self.name,
            delay_s=decision.delay_s,
            abort_http=None if decision.abort is None else decision.abort.http_status,
            abort_grpc=None if decision.abort is None else decision.abort.grpc_status,
        )
        return decision

    def _finish(self, decision: FaultDecision) -> None:
        if decision.is_fault:
            with self._lock:
                self.active -= 1

    def start(self, headers: Headers) -> FaultDecision:
        """Decide and count one request's faults; pair a fault with :meth:`finish`."""
        decision = self.decide(headers)
        return decision if decision is NO_FAULT else self._admit(decision)

    def finish(self, decision: FaultDecision) -> None:
        """The faulted request ended (frees its ``max_active_faults`` slot)."""
        self._finish(decision)

    @contextlib.contextmanager
    def inject(
        self,
        headers: Headers,
        *,
        deadline: Deadline | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[FaultDecision]:
        """Around one request: delay (cut at ``deadline``, default the current one),
        then raise :class:`InjectedFaultError` if aborted."""
        decision = self._admit(self.decide(headers))
        try:
            if decision.delay_s > 0:
                delay_within(decision.delay_s, deadline, sleep)
            error = decision.error()
            if error is not None:
                raise error
            yield decision
        finally:
            self._finish(decision)

    @contextlib.asynccontextmanager
    async def async_inject(
        self,
        headers: Headers,
        *,
        deadline: Deadline | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> AsyncIterator[FaultDecision]:
        """The async twin of :meth:`inject`."""
        decision = self._admit(self.decide(headers))
        try:
            if decision.delay_s > 0:
                await async_delay_within(decision.delay_s, deadline, sleep)
            error = decision.error()
            if error is not None:
                raise error
            yield decision
        finally:
            self._finish(decision)
