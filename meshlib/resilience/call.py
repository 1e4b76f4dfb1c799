"""One mesh call with the route's and the cluster's resilience, sync and async twins.

A transport routes the request (route + cluster chosen), then hands this
module a ``send(attempt)`` function that picks an endpoint (avoiding
``attempt.excluded_endpoints``, recording ``attempt.endpoint``), sends ONE try
within ``attempt.timeout_s`` and returns the answer. The order, per request::

    deadline (the caller's: gRPC's timeout= capped by the route; expired work is not started)
      -> fault / local rate limit stages (filter chain order; a delay ends at the deadline)
      -> HTTP: the route timeout starts (after the fault filter, as Envoy's router's)
      -> failure-rate breaker (if one is registered for the cluster or service)
      -> first try: admission (max_requests, max_connections / pending) -> send
      -> only if that try is retriable: tenacity-driven retries (budget,
         back-off, previous hosts), or hedging on per-try timeout

The decisions live in one place, :class:`CallCore` (no I/O: the deadlines, the
policy, whether to hedge, whether an answer or an error is final, what the
breaker records), asked by two drivers, :func:`resilient_call` and
:func:`async_resilient_call`, the only code here that waits (stages, admission,
the send, the retry and hedging runners), as tenacity's engine is driven.

The first try runs directly: no retry machinery is built unless it is needed,
so a call that succeeds costs a few counter updates more than a bare send.
Errors raised are meshlib's (:mod:`meshlib.errors`); the transport maps them to
its own flavour (:mod:`meshlib.transport.resilience_errors`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Generic, TypeVar

from meshlib.errors import CircuitBreakerOverflow, DeadlineExceeded, PerTryTimeoutError
from meshlib.resilience.admission import Admission
from meshlib.resilience.breaker import CircuitBreaker
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.deadline import (
    Deadline,
    current_deadline,
    enter_deadline,
    exit_deadline,
    run_within,
)
from meshlib.resilience.hedging import async_run_hedged, run_hedged
from meshlib.resilience.retry import (
    Attempt,
    FirstTry,
    RetryPolicy,
    async_run_with_retries,
    run_with_retries,
)
from meshlib.resilience.route_resilience import (
    Faulted,
    RouteResilience,
    async_enter_stages,
    enter_stages,
    finish_stages,
)
from meshlib.resilience.xds_cluster import ClusterResilience

T = TypeVar("T")

NO_RETRY: Final = RetryPolicy(num_retries=0)
_NOTHING_EXCLUDED: Final[frozenset[str]] = frozenset()
_NOTHING_FAULTED: Final[Faulted] = []
# gRPC statuses a failure-rate breaker counts as failures (server-side trouble).
_GRPC_FAILURES: Final = frozenset({2, 4, 13, 14, 15})

_monotonic = time.monotonic


def is_failure(outcome: Outcome) -> bool:
    """Whether a try's outcome counts as a failure for a failure-rate breaker."""
    if outcome.failure is not None:
        return True
    if outcome.status is not None and outcome.status >= 500:
        return True
    return outcome.grpc_status in _GRPC_FAILURES


def call_deadline(timeout_s: float | None, name: str) -> Deadline | None:
    """The call's deadline: the route timeout, capped by the caller's; refuse if expired."""
    deadline = current_deadline()
    if timeout_s is not None:
        deadline = Deadline.after(timeout_s).earliest(deadline)
    if deadline is not None:
        deadline.check(name)
    return deadline


def _enter(deadline: Deadline | None) -> contextvars.Token[Deadline | None] | None:
    return enter_deadline(deadline) if deadline is not None else None


def _exit(token: contextvars.Token[Deadline | None] | None) -> None:
    if token is not None:
        exit_deadline(token)


def _policy(route: RouteResilience, headers: Mapping[str, str], method: str | None) -> RetryPolicy:
    retry = route.retry
    if retry is None:
        return NO_RETRY
    return retry.policy if retry.allows(headers, method) else retry.single


def _idempotent(route: RouteResilience, method: str | None) -> bool:
    retry = route.retry
    return method is None or retry is None or retry.idempotent(method)


def _first_attempt(policy: RetryPolicy, deadline: Deadline | None) -> Attempt:
    """Try 1, bounded by the per-try timeout or the call's deadline, whichever is first."""
    if policy.per_try_timeout_s is None:
        return Attempt(1, _NOTHING_EXCLUDED, deadline)
    per_try = Deadline.after(policy.per_try_timeout_s)
    limit = per_try.earliest(deadline)
    return Attempt(1, _NOTHING_EXCLUDED, limit, per_try=limit is per_try)


def _settled(route: RouteResilience, outcome: Outcome) -> bool:
    """A plain success no retry condition can match (skips the full classification)."""
    if outcome.failure is not None or (route.retry is not None and route.retry.checks_answers):
        return False
    status = outcome.status
    return (status is None or status < 400) and outcome.grpc_status in (None, 0)


def _final(route: RouteResilience, policy: RetryPolicy, outcome: Outcome, idempotent: bool) -> bool:
    """Whether a first try's answer is the call's answer (no retry condition matches)."""
    return _settled(route, outcome) or policy.retry_reason(outcome, idempotent=idempotent) is None


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


class CallCore(Generic[T]):
    """One call's decisions, made without I/O: the drivers below (sync and async) ask
    it between their waits, as tenacity's ``BaseRetrying.iter`` is asked by its two
    ``__call__``s. Built first, it refuses a call whose deadline has passed."""

    __slots__ = (
        "breaker",
        "cluster",
        "describe_error",
        "describe_result",
        "idempotent",
        "name",
        "outer",
        "policy",
        "replayable",
        "route",
        "stages",
        "timeout_s",
    )

    def __init__(
        self,
        route: RouteResilience,
        cluster: ClusterResilience,
        headers: Mapping[str, str],
        method: str | None,
        timeout_s: float | None,
        caller_timeout_s: float | None,
        describe_result: Callable[[T], Outcome],
        describe_error: Callable[[BaseException], Outcome],
        replayable: bool,
        name: str,
    ) -> None:
        #: The caller's deadline (gRPC's ``timeout=`` capped by the route): bounds it all.
        self.outer = call_deadline(caller_timeout_s, name)
        self.route = route
        self.cluster = cluster
        self.stages = route.stages_for(cluster.name)
        self.breaker = cluster.breaker()
        self.policy = _policy(route, headers, method)
        self.idempotent = _idempotent(route, method)
        self.timeout_s = timeout_s
        self.describe_result = describe_result
        self.describe_error = describe_error
        self.replayable = replayable
        self.name = name

    def guarded(self) -> bool:
        """Whether anything runs around the tries (a deadline, stages, a breaker)."""
        return (
            self.outer is not None
            or self.timeout_s is not None
            or bool(self.stages)
            or self.breaker is not None
        )

    def call_deadline(self) -> Deadline | None:
        """The tries' deadline, once the stages ran: HTTP's route timeout starts now
        (after the fault filter, as Envoy's router), capped by the caller's."""
        if self.timeout_s is None:
            return self.outer
        return call_deadline(self.timeout_s, self.name)

    def hedged(self) -> bool:
        policy = self.policy
        return policy.hedge_on_per_try_timeout and policy.num_retries > 0 and self.replayable

    def first_attempt(self, deadline: Deadline | None) -> Attempt:
        return _first_attempt(self.policy, deadline)

    def retriable_error(self, error: Exception) -> bool:
        """Whether a first try that raised ``error`` is retried."""
        policy = self.policy
        return (
            policy.num_retries > 0
            and policy.retry_reason(self.describe_error(error), idempotent=self.idempotent)
            is not None
        )

    def final(self, value: T) -> bool:
        """Whether a first try's answer is the call's answer."""
        policy = self.policy
        if policy.num_retries == 0:
            return True
        return _final(self.route, policy, self.describe_result(value), self.idempotent)

    def broke(self, error: Exception, started: float) -> None:
        """The breaker's record of tries that raised ``error``."""
        assert self.breaker is not None
        record_breaker(self.breaker, self.describe_error(error), error, started)

    def answered(self, value: T, started: float) -> None:
        """The breaker's record of tries that answered ``value``."""
        assert self.breaker is not None
        record_breaker(self.breaker, self.describe_result(value), None, started)


def admit_first(admission: Admission, budget: RetryBudget, deadline: Deadline | None) -> None:
    """A call's first try when :meth:`Admission.start_call` said no: count the call in
    the budget and admit the try through the thresholds (overflow, or pending until
    ``deadline``)."""
    budget.request_started()
    try:
        admission.enter(deadline)
    except BaseException:
        budget.request_finished()
        raise


async def admit_first_async(
    admission: Admission, budget: RetryBudget, deadline: Deadline | None
) -> None:
    """The async twin of :func:`admit_first`."""
    budget.request_started()
    try:
        await admission.enter_async(deadline)
    except BaseException:
        budget.request_finished()
        raise


def admitted(send: Callable[[Attempt], T], cluster: ClusterResilience) -> Callable[[Attempt], T]:
    """``send`` with each try admitted by the cluster's thresholds first."""
    admission = cluster.admission

    def one(attempt: Attempt) -> T:
        admission.enter(attempt.deadline)
        try:
            return send(attempt)
        finally:
            admission.exit()

    return one


def async_admitted(
    send: Callable[[Attempt], Awaitable[T]], cluster: ClusterResilience
) -> Callable[[Attempt], Awaitable[T]]:
    """The async twin of :func:`admitted` (a pending try never blocks the loop)."""
    admission = cluster.admission

    async def one(attempt: Attempt) -> T:
        await admission.enter_async(attempt.deadline)
        try:
            return await send(attempt)
        finally:
            admission.exit()

    return one


def try_timeout_error(attempt: Attempt, policy: RetryPolicy, name: str) -> DeadlineExceeded:
    """The error for a try cancelled at its deadline: per-try timeout or the call's."""
    if not attempt.per_try:
        return DeadlineExceeded(f"{name}: deadline exceeded during try {attempt.number}")
    return PerTryTimeoutError(
        f"{name}: try {attempt.number} exceeded the per-try timeout of {policy.per_try_timeout_s}s",
        timeout_s=policy.per_try_timeout_s,
    )


# --- the sync driver: the only sync code of a call that waits ----------------------


def resilient_call(
    send: Callable[[Attempt], T],
    *,
    route: RouteResilience,
    cluster: ClusterResilience,
    headers: Mapping[str, str],
    method: str | None,
    timeout_s: float | None = None,
    caller_timeout_s: float | None = None,
    describe_result: Callable[[T], Outcome],
    describe_error: Callable[[BaseException], Outcome],
    replayable: bool = True,
    name: str,
) -> T:
    """Run one call (see the module doc). ``method`` is None for gRPC (idempotent).

    ``caller_timeout_s`` (gRPC's ``timeout=``) bounds the whole call, a fault delay
    included, as grpcio's deadline does; ``timeout_s`` (HTTP's route timeout) starts
    after the fault stages, as Envoy's router starts it after the fault filter. The
    enclosing deadline bounds both.
    """
    core = CallCore(
        route, cluster, headers, method, timeout_s, caller_timeout_s,
        describe_result, describe_error, replayable, name,
    )  # fmt: skip
    if not core.guarded():
        return _tries(send, core, None)
    token = _enter(core.outer)
    try:
        stages = core.stages
        faulted = enter_stages(stages, headers, core.outer) if stages else _NOTHING_FAULTED
        try:
            deadline = core.call_deadline()
            inner = _enter(deadline) if deadline is not core.outer else None
            try:
                breaker = core.breaker
                if breaker is None:
                    return _tries(send, core, deadline)
                breaker.acquire()
                started = _monotonic()
                try:
                    result = _tries(send, core, deadline)
                except Exception as error:
                    core.broke(error, started)
                    raise
                core.answered(result, started)
                return result
            finally:
                _exit(inner)
        finally:
            if faulted:
                finish_stages(faulted)
    finally:
        _exit(token)


def _tries(send: Callable[[Attempt], T], core: CallCore[T], deadline: Deadline | None) -> T:
    cluster = core.cluster
    if core.hedged():
        return run_hedged(
            admitted(send, cluster), core.policy,
            describe_result=core.describe_result, describe_error=core.describe_error,
            budget=cluster.budget, idempotent=core.idempotent, replayable=core.replayable,
            deadline=deadline, name=core.name,
        )  # fmt: skip
    attempt = core.first_attempt(deadline)
    admission = cluster.admission
    if not admission.start_call():
        admit_first(admission, cluster.budget, attempt.deadline)
    # The call is active in the budget and its first try holds its slots.
    try:
        try:
            if attempt.deadline is not None and attempt.deadline is not deadline:
                token = enter_deadline(attempt.deadline)
                try:
                    value = send(attempt)
                finally:
                    exit_deadline(token)
            else:
                value = send(attempt)
        except Exception as error:
            if not core.retriable_error(error):
                raise
            first: FirstTry[T] = FirstTry(attempt, error=error)
        else:
            if core.final(value):
                admission.end_call()
                return value
            first = FirstTry(attempt, value=value)
    except BaseException:
        admission.end_call()
        raise
    admission.exit()  # the first try's slots; the call stays active while it retries
    try:
        return run_with_retries(
            admitted(send, cluster), core.policy,
            describe_result=core.describe_result, describe_error=core.describe_error,
            budget=cluster.budget, idempotent=core.idempotent, replayable=core.replayable,
            deadline=deadline, name=core.name, first_try=first,
        )  # fmt: skip
    finally:
        cluster.budget.request_finished()


# --- the async driver: the only async code of a call that waits --------------------


async def async_resilient_call(
    send: Callable[[Attempt], Awaitable[T]],
    *,
    route: RouteResilience,
    cluster: ClusterResilience,
    headers: Mapping[str, str],
    method: str | None,
    timeout_s: float | None = None,
    caller_timeout_s: float | None = None,
    describe_result: Callable[[T], Outcome],
    describe_error: Callable[[BaseException], Outcome],
    replayable: bool = True,
    name: str,
    send_bounds_itself: bool = False,
) -> T:
    """The async twin of :func:`resilient_call`; a try is cancelled at its deadline.

    ``send_bounds_itself``: the send enforces ``attempt.timeout_s`` itself (gRPC's
    ``timeout=``), so the first try is not wrapped in a cancelling timer (a task).
    """
    core = CallCore(
        route, cluster, headers, method, timeout_s, caller_timeout_s,
        describe_result, describe_error, replayable, name,
    )  # fmt: skip
    if not core.guarded():
        return await _async_tries(send, core, None, send_bounds_itself)
    token = _enter(core.outer)
    try:
        stages = core.stages
        faulted = (
            await async_enter_stages(stages, headers, core.outer) if stages else _NOTHING_FAULTED
        )
        try:
            deadline = core.call_deadline()
            inner = _enter(deadline) if deadline is not core.outer else None
            try:
                breaker = core.breaker
                if breaker is None:
                    return await _async_tries(send, core, deadline, send_bounds_itself)
                breaker.acquire()
                started = _monotonic()
                try:
                    result = await _async_tries(send, core, deadline, send_bounds_itself)
                except Exception as error:
                    core.broke(error, started)
                    raise
                core.answered(result, started)
                return result
            finally:
                _exit(inner)
        finally:
            if faulted:
                finish_stages(faulted)
    finally:
        _exit(token)


async def _bounded(
    admitted: Callable[[Attempt], Awaitable[T]], attempt: Attempt, policy: RetryPolicy, name: str
) -> T:
    """Run one try, cancelling it at its deadline (per-try or the call's)."""
    assert attempt.deadline is not None
    token = enter_deadline(attempt.deadline)
    try:
        return await run_within(admitted(attempt), attempt.deadline.remaining())
    except asyncio.TimeoutError:
        raise try_timeout_error(attempt, policy, name) from None
    finally:
        exit_deadline(token)


async def _async_tries(
    send: Callable[[Attempt], Awaitable[T]],
    core: CallCore[T],
    deadline: Deadline | None,
    send_bounds_itself: bool,
) -> T:
    cluster = core.cluster
    admitted = async_admitted(send, cluster)
    if core.hedged():
        return await async_run_hedged(
            admitted, core.policy,
            describe_result=core.describe_result, describe_error=core.describe_error,
            budget=cluster.budget, idempotent=core.idempotent, replayable=core.replayable,
            deadline=deadline, name=core.name,
        )  # fmt: skip
    attempt = core.first_attempt(deadline)
    admission = cluster.admission
    if not admission.start_call():
        await admit_first_async(admission, cluster.budget, attempt.deadline)
    # The call is active in the budget and its first try holds its slots.
    try:
        try:
            if attempt.deadline is None:
                value = await send(attempt)
            elif send_bounds_itself:
                token = enter_deadline(attempt.deadline)
                try:
                    value = await send(attempt)
                finally:
                    exit_deadline(token)
            else:
                value = await _bounded(send, attempt, core.policy, core.name)
        except Exception as error:
            if not core.retriable_error(error):
                raise
            first: FirstTry[T] = FirstTry(attempt, error=error)
        else:
            if core.final(value):
                admission.end_call()
                return value
            first = FirstTry(attempt, value=value)
    except BaseException:
        admission.end_call()
        raise
    admission.exit()  # the first try's slots; the call stays active while it retries
    try:
        return await async_run_with_retries(
            admitted, core.policy,
            describe_result=core.describe_result, describe_error=core.describe_error,
            budget=cluster.budget, idempotent=core.idempotent, replayable=core.replayable,
            deadline=deadline, name=core.name, first_try=first,
        )  # fmt: skip
    finally:
        cluster.budget.request_finished()


__all__ = [
    "CallCore",
    "admit_first",
    "admit_first_async",
    "admitted",
    "async_admitted",
    "async_resilient_call",
    "call_deadline",
    "is_failure",
    "record_breaker",
    "resilient_call",
    "try_timeout_error",
]
