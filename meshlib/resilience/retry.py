"""Retries as Envoy's router does them, driven by tenacity's engine and strategies.

A transport calls :func:`run_with_retries` (or :func:`async_run_with_retries`)
once per request with a function that performs ONE try::

    def one_try(attempt: Attempt) -> httpx.Response:
        endpoint = pick(exclude=attempt.excluded_endpoints)   # previous hosts
        attempt.endpoint = endpoint.address                   # so a retry avoids it
        return send(endpoint, timeout=attempt.timeout_s)      # per-try budget

    response = run_with_retries(one_try, policy, describe_result=outcome_of_response,
                                describe_error=outcome_of_error, budget=cluster_budget,
                                idempotent=is_idempotent_method(method), replayable=...)

Each try's result or exception is described as an :class:`Outcome`; the policy's
``retry_on`` predicate decides. The call stops at ``num_retries``, at the
deadline (no try starts after it, no back-off sleeps past it), when the retry
budget refuses (counted, not an error) or when the request cannot be retried
(non-idempotent without permission: only tries that never reached the server are
retried). When retries run out the caller gets the last try's answer or
exception; a retry that was due for a body that cannot be resent raises
:class:`RequestNotReplayable`. Async runs enforce ``per_try_timeout`` by
cancelling the try (:class:`PerTryTimeoutError`); sync runs hand the per-try
deadline to the try (``attempt.timeout_s`` and the deadline context variable),
which must enforce it itself (e.g. as httpx's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import tenacity
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_base

from meshlib.errors import (
    DeadlineExceeded,
    PerTryTimeoutError,
    RequestNotReplayable,
    ResilienceValueError,
)
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.backoff import (
    BackOff,
    Random,
    RateLimitedBackOff,
    wait_envoy_jitter,
    wait_rate_limited,
)
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import (
    ISTIO_DEFAULT_RETRY_ON,
    NOT_SENT,
    FailureKind,
    Outcome,
    RetryCondition,
)
from meshlib.resilience.deadline import Deadline, current_deadline, deadline_scope, run_within

_log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A route's retry policy (Envoy ``RetryPolicy`` / Istio ``HTTPRetry``).

    ``num_retries`` counts retries after the first try. ``retry_on`` is any
    predicate over an :class:`Outcome`; :class:`RetryOn` gives Envoy's conditions.
    ``hedge_on_per_try_timeout`` is read by :mod:`meshlib.resilience.hedging`.
    """

    num_retries: int = 1
    retry_on: RetryCondition = ISTIO_DEFAULT_RETRY_ON
    per_try_timeout_s: float | None = None
    back_off: BackOff = field(default_factory=BackOff)
    rate_limited_back_off: RateLimitedBackOff | None = None
    retry_previous_hosts: bool = True
    retry_non_idempotent: bool = False
    hedge_on_per_try_timeout: bool = False

    def __post_init__(self) -> None:
        if self.num_retries < 0:
            raise ResilienceValueError(f"retry policy: num_retries {self.num_retries} < 0")
        if self.per_try_timeout_s is not None and self.per_try_timeout_s <= 0:
            raise ResilienceValueError("retry policy: per_try_timeout must be > 0")

    def retry_reason(self, outcome: Outcome, *, idempotent: bool = True) -> str | None:
        """Why ``outcome`` should be retried (a condition name), or ``None``."""
        reason = _reason(self.retry_on, outcome)
        if reason is None:
            return None
        if not idempotent and not self.retry_non_idempotent and outcome.failure not in NOT_SENT:
            return None
        return reason


def _reason(condition: RetryCondition, outcome: Outcome) -> str | None:
    explain = getattr(condition, "reason", None)
    if callable(explain):
        found = explain(outcome)
        return found if isinstance(found, str) else None
    return "retry_on" if condition(outcome) else None


@dataclass(frozen=True, slots=True)
class FirstTry(Generic[T]):
    """A first try the caller already made itself (its fast path) and what it produced.

    Given to the runners, it stands in for try 1: no work is repeated, the
    back-off numbering, previous hosts and stop rules carry on from it. The
    caller counts the call as an active request in the budget itself.
    """

    attempt: Attempt
    value: T | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class Attempt:
    """One try, as the try function sees it; it sets ``endpoint`` once it picked one.

    ``deadline`` is this try's own deadline (per-try timeout or the call's,
    whichever is first); it is also the current deadline while the try runs.
    """

    number: int
    excluded_endpoints: frozenset[str]
    deadline: Deadline | None
    hedge: bool = False
    endpoint: str | None = None
    # Hedged tries only: set when the try lost the race (a sync try may poll it and stop).
    abandoned: threading.Event | None = None
    #: The per-try timeout (not the call's deadline) ends this try: running out of
    #: time is a ``per-try-timeout`` (retriable), not the call's DeadlineExceeded.
    per_try: bool = False

    @property
    def timeout_s(self) -> float | None:
        """Seconds this try may take (per-try timeout or what is left of the call)."""
        return None if self.deadline is None else self.deadline.remaining()


def describe_success(_result: object) -> Outcome:
    """Treat every returned value as a success (for plain functions)."""
    return Outcome()


def describe_exception(error: BaseException) -> Outcome:
    """A transport-neutral description of an exception (transports pass their own)."""
    if isinstance(error, PerTryTimeoutError):
        return Outcome(failure=FailureKind.TIMEOUT, error=error)
    if isinstance(error, DeadlineExceeded):
        return Outcome(failure=FailureKind.OTHER, error=error)
    if isinstance(error, ConnectionRefusedError):
        return Outcome(failure=FailureKind.CONNECT_FAILURE, error=error)
    if isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return Outcome(failure=FailureKind.RESET, error=error)
    return Outcome(failure=FailureKind.OTHER, error=error)


class RetryPlan(Generic[T]):
    """The one state object of a call with retries: tenacity strategies read and update it."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        describe_result: Callable[[T], Outcome],
        describe_error: Callable[[BaseException], Outcome],
        budget: RetryBudget | None,
        idempotent: bool,
        replayable: bool,
        deadline: Deadline | None,
        rng: Random,
        clock: Callable[[], float],
        name: str,
    ) -> None:
        self.policy = policy
        self.describe_result = describe_result
        self.describe_error = describe_error
        self.budget = budget
        self.idempotent = idempotent
        self.replayable = replayable
        self.deadline = deadline
        self.clock = clock
        self.name = name
        self.excluded: set[str] = set()
        self.last_outcome: Outcome | None = None
        self.last_reason: str | None = None
        self.holding_retry = False
        self.refused_not_replayable = False
        self.retries = 0
        self.budget_refused = False
        jitter = wait_envoy_jitter(policy.back_off, rng)
        self.wait: wait_base = jitter
        if policy.rate_limited_back_off is not None:
            self.wait = wait_rate_limited(
                policy.rate_limited_back_off, self._last_headers, jitter, rng=rng
            )
        self.stop = (
            stop_after_attempt(policy.num_retries + 1)
            | _StopPastDeadline(self)
            | _StopUnlessReplayable(self)
            | _StopWhenBudgetRefuses(self)
        )

    def _last_headers(self) -> dict[str, str]:
        return dict(self.last_outcome.headers) if self.last_outcome is not None else {}

    # -- tenacity hooks -------------------------------------------------------------
    def should_retry(self, state: tenacity.RetryCallState) -> bool:
        """tenacity ``retry=``: classify the try's outcome and remember it."""
        future = state.outcome
        if future is None:
            return False
        error = future.exception()
        outcome = (
            self.describe_error(error)
            if error is not None
            else self.describe_result(future.result())
        )
        self.last_outcome = outcome
        self.last_reason = self.policy.retry_reason(outcome, idempotent=self.idempotent)
        return self.last_reason is not None

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        resilience_metrics().retry(self.name or "call", self.last_reason)
        _log.info(
            "retry",
            name=self.name,
            attempt=state.attempt_number + 1,
            reason=self.last_reason,
            backoff_s=round(state.next_action.sleep, 4) if state.next_action else None,
            excluded=sorted(self.excluded),
        )

    def on_give_up(self, state: tenacity.RetryCallState) -> object:
        """tenacity ``retry_error_callback``: the caller gets the last answer or error."""
        future = state.outcome
        assert future is not None  # tenacity only gives up after a try
        if self.refused_not_replayable:
            error = future.exception()
            message = (
                f"{self.name or 'request'}: retry on {self.last_reason} refused: "
                "the request body was streamed and cannot be sent again"
            )
            if error is not None:
                raise RequestNotReplayable(message) from error
            raise RequestNotReplayable(message, last_result=future.result())
        return future.result()

    # -- the try ------------------------------------------------------------------------
    def next_attempt(self, number: int, *, hedge: bool = False) -> Attempt:
        per_try: Deadline | None = None
        if self.policy.per_try_timeout_s is not None:
            per_try = Deadline.after(self.policy.per_try_timeout_s, clock=self.clock)
        limit = per_try.earliest(self.deadline) if per_try is not None else self.deadline
        return Attempt(
            number, frozenset(self.excluded), limit, hedge=hedge, per_try=limit is per_try
        )

    def finish_attempt(self, attempt: Attempt) -> None:
        if self.policy.retry_previous_hosts and attempt.endpoint is not None:
            self.excluded.add(attempt.endpoint)
        self.release()

    def timeout_error(self, attempt: Attempt) -> DeadlineExceeded:
        """The error for a try cut short: per-try timeout unless the call's deadline bound it."""
        if not attempt.per_try:
            return DeadlineExceeded(
                f"{self.name or 'call'}: deadline exceeded during try {attempt.number}"
            )
        return PerTryTimeoutError(
            f"{self.name or 'call'}: try {attempt.number} exceeded the per-try timeout "
            f"of {self.policy.per_try_timeout_s}s",
            timeout_s=self.policy.per_try_timeout_s,
        )

    def release(self) -> None:
        if self.holding_retry and self.budget is not None:
            self.budget.release_retry()
        self.holding_retry = False

    def tracked(self) -> contextlib.AbstractContextManager[None]:
        return self.budget.track_request() if self.budget is not None else contextlib.nullcontext()


class _StopPastDeadline(stop_base):
    """Stop when the back-off would end after the call's deadline."""

    def __init__(self, plan: RetryPlan[Any]) -> None:
        self.plan = plan

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        deadline = self.plan.deadline
        # tenacity >= 8.3 computes the back-off before asking stop strategies.
        upcoming = float(getattr(retry_state, "upcoming_sleep", 0.0))
        return deadline is not None and deadline.remaining() <= upcoming


class _StopUnlessReplayable(stop_base):
    """Stop (and have the caller see RequestNotReplayable) when the body cannot be resent."""

    def __init__(self, plan: RetryPlan[Any]) -> None:
        self.plan = plan

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.plan.replayable:
            return False
        self.plan.refused_not_replayable = True
        return True


class _StopWhenBudgetRefuses(stop_base):
    """Take a retry slot from the budget; stop if none is free. Must run last."""

    def __init__(self, plan: RetryPlan[Any]) -> None:
        self.plan = plan

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        budget = self.plan.budget
        if budget is None:
            return False
        if budget.try_acquire_retry():
            self.plan.holding_retry = True
            return False
        self.plan.budget_refused = True
        return True


def _replay(plan: RetryPlan[T], first_try: FirstTry[T]) -> T:
    """Stand in for try 1 with what the caller's own first try produced."""
    plan.finish_attempt(first_try.attempt)
    if first_try.error is not None:
        raise first_try.error
    return first_try.value  # type: ignore[return-value]


def _plan(
    policy: RetryPolicy,
    describe_result: Callable[[T], Outcome],
    describe_error: Callable[[BaseException], Outcome],
    budget: RetryBudget | None,
    idempotent: bool,
    replayable: bool,
    deadline: Deadline | None,
    rng: Random,
    clock: Callable[[], float],
    name: str,
) -> RetryPlan[T]:
    return RetryPlan(
        policy,
        describe_result=describe_result,
        describe_error=describe_error,
        budget=budget,
        idempotent=idempotent,
        replayable=replayable,
        deadline=deadline if deadline is not None else current_deadline(),
        rng=rng,
        clock=clock,
        name=name,
    )


def run_with_retries(
    attempt_fn: Callable[[Attempt], T],
    policy: RetryPolicy,
    *,
    describe_result: Callable[[T], Outcome] = describe_success,
    describe_error: Callable[[BaseException], Outcome] = describe_exception,
    budget: RetryBudget | None = None,
    idempotent: bool = True,
    replayable: bool = True,
    deadline: Deadline | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: Random = random.random,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
    first_try: FirstTry[T] | None = None,
) -> T:
    """Run ``attempt_fn`` until an outcome is not retriable or retries run out."""
    plan: RetryPlan[T] = _plan(
        policy, describe_result, describe_error, budget, idempotent, replayable, deadline,
        rng, clock, name,
    )  # fmt: skip
    if plan.deadline is not None and first_try is None:
        plan.deadline.check(name or "call")
    number = 0

    def one_try() -> T:
        nonlocal number
        number += 1
        if number == 1 and first_try is not None:
            return _replay(plan, first_try)
        attempt = plan.next_attempt(number)
        try:
            with deadline_scope(deadline=attempt.deadline):
                return attempt_fn(attempt)
        finally:
            plan.finish_attempt(attempt)

    retrying = tenacity.Retrying(
        sleep=sleep,
        stop=plan.stop,
        wait=plan.wait,
        retry=plan.should_retry,
        before_sleep=plan.before_sleep,
        retry_error_callback=plan.on_give_up,
    )
    with plan.tracked() if first_try is None else contextlib.nullcontext():
        try:
            return retrying(one_try)
        finally:
            plan.release()


async def async_run_with_retries(
    attempt_fn: Callable[[Attempt], Awaitable[T]],
    policy: RetryPolicy,
    *,
    describe_result: Callable[[T], Outcome] = describe_success,
    describe_error: Callable[[BaseException], Outcome] = describe_exception,
    budget: RetryBudget | None = None,
    idempotent: bool = True,
    replayable: bool = True,
    deadline: Deadline | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Random = random.random,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
    first_try: FirstTry[T] | None = None,
) -> T:
    """The async twin of :func:`run_with_retries`; it cancels a try at its per-try deadline."""
    plan: RetryPlan[T] = _plan(
        policy, describe_result, describe_error, budget, idempotent, replayable, deadline,
        rng, clock, name,
    )  # fmt: skip
    if plan.deadline is not None and first_try is None:
        plan.deadline.check(name or "call")
    number = 0

    async def one_try() -> T:
        nonlocal number
        number += 1
        if number == 1 and first_try is not None:
            return _replay(plan, first_try)
        attempt = plan.next_attempt(number)
        try:
            with deadline_scope(deadline=attempt.deadline):
                if attempt.deadline is None:
                    return await attempt_fn(attempt)
                try:
                    return await run_within(attempt_fn(attempt), attempt.deadline.remaining())
                except asyncio.TimeoutError:
                    raise plan.timeout_error(attempt) from None
        finally:
            plan.finish_attempt(attempt)

    retrying = tenacity.AsyncRetrying(
        sleep=sleep,
        stop=plan.stop,
        wait=plan.wait,
        retry=plan.should_retry,
        before_sleep=plan.before_sleep,
        retry_error_callback=plan.on_give_up,
    )
    with plan.tracked() if first_try is None else contextlib.nullcontext():
        try:
            return await retrying(one_try)
        finally:
            plan.release()
