"""A call plan: one route's and one cluster's resilience, bound once, with the
lifecycle's decisions (no I/O).

The order of one call, written here once and run by the two drivers of
:mod:`meshlib.resilience.call` (the only code that waits)::

    deadline (the caller's: gRPC's timeout= capped by the route; expired work is not started)
      -> fault / local rate limit stages (filter chain order; a delay ends at the deadline)
      -> HTTP: the route timeout starts (after the fault filter, as Envoy's router's)
      -> failure-rate breaker (if one is registered for the cluster or service)
      -> budget + admission (max_requests, max_connections / pending)
      -> the try: pick -> build -> observer.start -> send -> classify -> done hook
         (the protocol's :class:`TryAdapter`)
      -> only if that try is retriable: retries (budget, back-off, previous hosts),
         or hedging on per-try timeout

A :class:`CallPlan` is compiled once per (snapshot, route, cluster) by the
transports (a plain function gets one per call from
:func:`~meshlib.resilience.call.resilient_call`): the stages, the retry policy
(unless the request's headers choose it), the breaker, the budget and the
admission are looked up once, so the common call (one try, a success) costs a
few counter updates more than a bare send. The protocol differs only through
its adapter: build the request for an endpoint, send (sync or async), classify
the answer, map the call's errors.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from typing import Final, Generic, TypeVar

from meshlib.errors import CircuitBreakerOverflow, DeadlineExceeded, PerTryTimeoutError
from meshlib.resilience.breaker import CircuitBreaker
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.deadline import Deadline, LowerHeaders, current_deadline
from meshlib.resilience.grpc_codes import GrpcCode
from meshlib.resilience.retry import Attempt, RetryPolicy
from meshlib.resilience.route_resilience import (
    Faulted,
    RouteResilience,
    Stage,
    async_enter_stages,
    enter_stages,
    finish_stages,
    header_gate,
)
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.resilience.xds_filters import LocalRateLimiter

#: What the protocol calls one request (its adapter reads it).
C = TypeVar("C")
#: What one try answers.
T = TypeVar("T")

NO_RETRY: Final = RetryPolicy(num_retries=0)
#: The headers of a request whose headers cannot matter (shared: never changed).
NO_HEADERS: Final[Mapping[str, str]] = LowerHeaders()
NOTHING_FAULTED: Final[Faulted] = []
NOTHING_EXCLUDED: Final[frozenset[str]] = frozenset()
_NO_NAMES: Final[frozenset[str]] = frozenset()
_MAX_METHODS: Final = 16
# gRPC statuses a failure-rate breaker counts as failures (server-side trouble).
_GRPC_FAILURES: Final = frozenset(
    int(code)
    for code in (
        GrpcCode.UNKNOWN,
        GrpcCode.DEADLINE_EXCEEDED,
        GrpcCode.INTERNAL,
        GrpcCode.UNAVAILABLE,
        GrpcCode.DATA_LOSS,
    )
)
_monotonic: Final = time.monotonic


def is_failure(outcome: Outcome) -> bool:
    """Whether a try's outcome counts as a failure for a failure-rate breaker."""
    if outcome.failure is not None:
        return True
    if outcome.status is not None and outcome.status >= 500:
        return True
    return outcome.grpc_status in _GRPC_FAILURES


def record_breaker(
    breaker: CircuitBreaker, outcome: Outcome | None, error: BaseException | None, started: float
) -> None:
    """Close a call the failure-rate breaker admitted: its outcome and duration."""
    elapsed = _monotonic() - started
    if isinstance(error, CircuitBreakerOverflow):
        breaker.release()  # failed fast before reaching the upstream: not an outcome
    elif outcome is not None and is_failure(outcome):
        breaker.on_failure(elapsed)
    else:
        breaker.record_success(elapsed)


def time_left(attempt: Attempt) -> float:
    """Seconds ``attempt`` has (it has a deadline); expired work is not started (a
    fault delay, a pending wait or a back-off may have spent it)."""
    deadline = attempt.deadline
    assert deadline is not None
    left = deadline.at - _monotonic() if deadline.clock is _monotonic else deadline.remaining()
    if left <= 0:
        raise DeadlineExceeded(
            f"deadline exceeded before try {attempt.number} started", timeout_s=0.0
        )
    return left


def try_timeout_error(attempt: Attempt, policy: RetryPolicy, name: str) -> DeadlineExceeded:
    """The error for a try cancelled at its deadline: per-try timeout or the call's."""
    if not attempt.per_try:
        return DeadlineExceeded(f"{name}: deadline exceeded during try {attempt.number}")
    return PerTryTimeoutError(
        f"{name}: try {attempt.number} exceeded the per-try timeout of {policy.per_try_timeout_s}s",
        timeout_s=policy.per_try_timeout_s,
    )


class TryAdapter(ABC, Generic[C, T]):
    """The protocol's part of a plan, bound at compile time: one try to one endpoint
    (pick avoiding ``attempt.excluded_endpoints`` and record ``attempt.endpoint``,
    build within ``attempt.deadline``, report through the plan's observer, send), how
    an answer or error reads, and how the call's error reaches the caller."""

    __slots__ = ()

    #: Async: the send enforces the try's deadline itself (gRPC's ``timeout=``), so
    #: the driver sets no timer around it.
    bounds_itself = False
    #: The send reads the try's deadline from the context (a plain function): the
    #: driver makes it current while the first try runs (retries always do).
    reads_deadline = False
    #: Every answer is a success (gRPC: an answer is status OK; errors are raised):
    #: a first try's answer is final unless the route's conditions read answers, and
    #: the breaker records it as a success without classifying it (the common call
    #: pays no :meth:`settled` / :meth:`describe_result` / :func:`record_breaker`).
    answers_succeed = False

    @abstractmethod
    def send(self, call: C, attempt: Attempt) -> T:
        """One try, waiting for its answer (sync driver)."""

    @abstractmethod
    def send_async(self, call: C, attempt: Attempt) -> Awaitable[T]:
        """One try (async driver)."""

    @abstractmethod
    def describe_result(self, value: T) -> Outcome:
        """An answer as the retry conditions and the breaker read it."""

    @abstractmethod
    def describe_error(self, error: BaseException) -> Outcome:
        """An error of one try as the retry conditions and the breaker read it."""

    def settled(self, value: T) -> bool:
        """A plain success, final without classification (no retry condition can match
        it unless the route's conditions read answers' headers)."""
        return False

    def headers(self, call: C) -> Mapping[str, str]:
        """The request's headers, as the stages and the retry policy read them."""
        return NO_HEADERS

    def method(self, call: C) -> str | None:
        """The HTTP method (idempotence, retriable methods); None for gRPC."""
        return None

    def replayable(self, call: C) -> bool:
        """Whether the request can be sent again (asked only before a retry or hedge)."""
        return True

    def answer(self, error: Exception, call: C) -> T:
        """The call ended in ``error``: what the caller gets (raise it, or answer)."""
        raise error


class CallPlan(Generic[C, T]):
    """One (route, cluster)'s lifecycle parts, bound once (see the module doc); valid
    while its snapshot stands and no breaker was registered since (:meth:`current`).

    ``timeout_s``: a route timeout that starts after the stages (HTTP); ``cap_s``: the
    route's cap on the caller's timeout, which counts the stages in (gRPC, gRFC A31).
    """

    __slots__ = (
        "adapter",
        "admission",
        "answer_final",
        "answers_succeed",
        "breaker",
        "breaker_generation",
        "breakers",
        "budget",
        "cap_s",
        "checks_answers",
        "cluster",
        "end_call",
        "faults_need_headers",
        "header_gate",
        "headerless",
        "idempotent_methods",
        "limiters",
        "name",
        "policy",
        "route",
        "stages",
        "start_call",
        "timeout_s",
    )

    def __init__(
        self,
        route: RouteResilience,
        cluster: ClusterResilience,
        cluster_name: str,
        adapter: TryAdapter[C, T],
        name: str,
        *,
        timeout_s: float | None = None,
        cap_s: float | None = None,
    ) -> None:
        self.adapter = adapter
        self.name = name
        self.route = route
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.cap_s = cap_s
        # Bound once: a call uses each of them (a cold attribute chain costs more).
        self.admission = cluster.admission
        self.start_call = cluster.thresholds.start_call
        self.end_call = cluster.thresholds.end_call
        self.budget = cluster.budget
        self.breakers = cluster.breakers
        self.breaker_generation = cluster.breaker_generation
        self.breaker: CircuitBreaker | None = cluster.breaker()
        self.stages: tuple[Stage, ...] = route.stages_for(cluster_name)
        self.limiters = tuple(s for s in self.stages if type(s) is LocalRateLimiter)
        retry = route.retry
        # A policy that depends on the request's headers is chosen per call.
        self.policy: RetryPolicy | None = (
            NO_RETRY if retry is None else retry.policy if not retry.request_matchers else None
        )
        #: Header conditions can make even a plain success retriable.
        self.checks_answers = retry is not None and retry.checks_answers
        #: Bound once from the adapter (see :attr:`TryAdapter.answers_succeed`).
        self.answers_succeed = adapter.answers_succeed
        #: Every first-try answer is the call's answer (no condition reads answers).
        self.answer_final = adapter.answers_succeed and not self.checks_answers
        self.idempotent_methods: dict[str, bool] = {}
        #: Header names whose presence makes a request's headers worth reading (None: any
        #: request's may matter, so they are always read; empty: they never matter).
        self.header_gate: frozenset[str] | None = header_gate(self.stages)
        if not route.needs_headers(cluster_name):
            self.header_gate = _NO_NAMES
        elif self.policy is None:  # the retry policy is chosen by the request's headers
            self.header_gate = None
        self.headerless = self.header_gate is not None and not self.header_gate
        #: A request whose headers were not read (NO_HEADERS) has no fault, only limits:
        #: it enters the stages without waiting, even in the async driver.
        self.faults_need_headers = self.header_gate is not None

    def current(self) -> bool:
        """False once a breaker was registered: :attr:`breaker` may be another now."""
        return self.breaker_generation == self.breakers.generation

    # --- deadlines -------------------------------------------------------------------

    def outer_at(self, caller_timeout: float | None, now: float) -> float | None:
        """When the call must end, before its stages: the caller's timeout (capped by
        :attr:`cap_s`) and the enclosing deadline, whichever is first. Raises
        DeadlineExceeded when it has passed (expired work is not started)."""
        cap = self.cap_s
        if cap is not None and (caller_timeout is None or cap < caller_timeout):
            caller_timeout = cap
        at = None if caller_timeout is None else now + caller_timeout
        enclosing = current_deadline()
        if enclosing is not None:
            end = enclosing.at if enclosing.clock is _monotonic else now + enclosing.remaining()
            if at is None or end < at:
                at = end
        if at is not None and at <= now:
            raise DeadlineExceeded(
                f"deadline exceeded before the {self.name} started", timeout_s=0.0
            )
        return at

    def call_at(self, outer_at: float | None, now: float) -> float | None:
        """When the tries must end: the route timeout from ``now`` (after the stages, as
        Envoy's router starts it after the fault filter), capped by ``outer_at``."""
        timeout = self.timeout_s
        if timeout is None:
            return outer_at
        at = now + timeout
        if outer_at is not None and outer_at < at:
            if outer_at <= now:
                raise DeadlineExceeded(
                    "deadline exceeded during the injected fault delay", timeout_s=0.0
                )
            return outer_at
        return at

    @staticmethod
    def first_attempt(try_at: float | None, call_at: float | None) -> Attempt:
        """Try 1: its deadline and whether the per-try timeout set it."""
        if try_at is None:
            return Attempt(1, NOTHING_EXCLUDED, None)
        return Attempt(1, NOTHING_EXCLUDED, Deadline(try_at), per_try=try_at != call_at)

    @staticmethod
    def first_try(policy: RetryPolicy, call_at: float | None) -> Attempt:
        """Try 1 of a call that ends at ``call_at``: its deadline is its per-try
        timeout's or the call's, whichever is first (:meth:`first_attempt`)."""
        per_try = policy.per_try_timeout_s
        if per_try is not None:
            at = _monotonic() + per_try
            if call_at is None or at < call_at:
                return Attempt(1, NOTHING_EXCLUDED, Deadline(at), per_try=True)
        if call_at is None:
            return Attempt(1, NOTHING_EXCLUDED, None)
        return Attempt(1, NOTHING_EXCLUDED, Deadline(call_at))

    # --- the stages and the breaker ----------------------------------------------------

    def enter(self, headers: Mapping[str, str], outer_at: float | None) -> Faulted:
        """The fault / rate-limit stages (a fault delay is slept, cut at ``outer_at``).
        Raises meshlib's errors; pair with :func:`finish_stages`."""
        if headers is NO_HEADERS and self.faults_need_headers:
            for limiter in self.limiters:  # no fault can apply: only the limits act
                limiter.check()
            return NOTHING_FAULTED
        return enter_stages(self.stages, headers, None if outer_at is None else Deadline(outer_at))

    async def enter_async(self, headers: Mapping[str, str], outer_at: float | None) -> Faulted:
        """The async twin of :meth:`enter` (a fault delay is awaited)."""
        bound = None if outer_at is None else Deadline(outer_at)
        return await async_enter_stages(self.stages, headers, bound)

    def waits_in_stages(self, headers: Mapping[str, str]) -> bool:
        """Whether the stages may wait (a fault delay) for this request."""
        return bool(self.stages) and not (headers is NO_HEADERS and self.faults_need_headers)

    def record(self, value: T | None, error: Exception | None, started: float) -> None:
        """The breaker's record of the tries (an answer ``value`` or an ``error``)."""
        breaker = self.breaker
        assert breaker is not None
        adapter = self.adapter
        if error is not None:
            record_breaker(breaker, adapter.describe_error(error), error, started)
        else:
            record_breaker(breaker, adapter.describe_result(value), None, started)  # type: ignore[arg-type]

    @staticmethod
    def leave(faulted: Faulted) -> None:
        if faulted:
            finish_stages(faulted)

    # --- the policy and the answer -------------------------------------------------

    def policy_for(self, headers: Mapping[str, str], call: C) -> RetryPolicy:
        policy = self.policy
        if policy is not None:
            return policy
        retry = self.route.retry
        assert retry is not None
        return retry.policy if retry.allows(headers, self.adapter.method(call)) else retry.single

    def idempotent(self, call: C) -> bool:
        """Whether retries may resend a request that reached the server (gRPC: always);
        remembered per HTTP method (a few are used)."""
        method = self.adapter.method(call)
        retry = self.route.retry
        if method is None or retry is None:
            return True
        known = self.idempotent_methods.get(method)
        if known is None:
            known = retry.idempotent(method)
            if len(self.idempotent_methods) < _MAX_METHODS:
                self.idempotent_methods[method] = known
        return known

    def hedged(self, policy: RetryPolicy, call: C) -> bool:
        return (
            policy.hedge_on_per_try_timeout
            and policy.num_retries > 0
            and self.adapter.replayable(call)
        )

    def final(self, policy: RetryPolicy, value: T, call: C) -> bool:
        """Whether a first try's answer is the call's answer (no retry condition matches;
        the drivers ask :meth:`TryAdapter.settled` first)."""
        outcome = self.adapter.describe_result(value)
        return policy.retry_reason(outcome, idempotent=self.idempotent(call)) is None

    def retriable(self, policy: RetryPolicy, error: Exception, call: C) -> bool:
        """Whether a first try that raised ``error`` is retried."""
        outcome = self.adapter.describe_error(error)
        return policy.retry_reason(outcome, idempotent=self.idempotent(call)) is not None


__all__ = [
    "NO_HEADERS",
    "NO_RETRY",
    "CallPlan",
    "TryAdapter",
    "is_failure",
    "record_breaker",
    "time_left",
    "try_timeout_error",
]
