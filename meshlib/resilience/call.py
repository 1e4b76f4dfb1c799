"""The two drivers of a call's lifecycle, sync and async: the only code that waits.

The lifecycle and its decisions are written once, in
:class:`~meshlib.resilience.call_plan.CallPlan` (no I/O; the order is in that
module's docstring); :func:`run_sync` and :func:`run_async` ask it between their
waits (stages, admission, the try, the retry and hedging runners), as tenacity's
``BaseRetrying.iter`` is driven by its two ``__call__``. Every mesh call takes
these drivers: HTTP and gRPC, sync and async, first try and retries; the
common call (one try that succeeds) is just their cheapest branch.

:func:`single_try` / :func:`single_try_async` run a plan up to the start of a
call that is not replayed (gRPC streams, ``future()``): deadline and stages,
then the one try's start.

:func:`resilient_call` / :func:`async_resilient_call` run a plain ``send(attempt)``
function under a route's and a cluster's resilience (a plan per call).
Errors raised are meshlib's (:mod:`meshlib.errors`); the adapters map them to
their protocol's flavour.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Final, Generic, TypeVar

from meshlib.resilience.call_plan import (
    NO_HEADERS,
    NOTHING_FAULTED,
    C,
    CallPlan,
    TryAdapter,
    is_failure,
    record_breaker,
    try_timeout_error,
)
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.deadline import (
    Deadline,
    TryTimer,
    enter_deadline,
    exit_deadline,
)
from meshlib.resilience.hedging import async_run_hedged, run_hedged
from meshlib.resilience.retry import (
    Attempt,
    FirstTry,
    async_run_with_retries,
    run_with_retries,
)
from meshlib.resilience.route_resilience import RouteResilience, finish_stages
from meshlib.resilience.xds_cluster import ClusterResilience

T = TypeVar("T")

_monotonic: Final = time.monotonic


def _deadline(at: float | None) -> Deadline | None:
    return None if at is None else Deadline(at)


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


# --- the sync driver ------------------------------------------------------------


def run_sync(plan: CallPlan[C, T], call: C, caller_timeout: float | None = None) -> T:
    """One call under ``plan`` (``caller_timeout``: gRPC's ``timeout=``); the caller
    gets the answer, or what the adapter makes of the call's error. Written as one
    function, as :func:`run_async` is: the common call (limits only, one try that
    succeeds) runs no further frame of the driver's."""
    adapter = plan.adapter
    try:
        now = _monotonic()
        outer_at = plan.outer_at(caller_timeout, now)
        headers = NO_HEADERS if plan.headerless else adapter.headers(call)
        if not plan.stages:
            faulted = NOTHING_FAULTED
        elif headers is NO_HEADERS and plan.faults_need_headers:
            for limiter in plan.limiters:  # no fault can apply: only the limits act
                limiter.check()
            faulted = NOTHING_FAULTED
        else:
            faulted = plan.enter(headers, outer_at)
        try:
            if faulted:  # a fault delay may have been slept: the route timeout starts now
                now = _monotonic()
            call_at = outer_at if plan.timeout_s is None else plan.call_at(outer_at, now)
            breaker = plan.breaker
            started = 0.0
            if breaker is not None:
                breaker.acquire()
                started = _monotonic()
            try:
                policy = plan.policy or plan.policy_for(headers, call)
                if policy.hedge_on_per_try_timeout and plan.hedged(policy, call):
                    value = run_hedged(
                        admitted(partial(adapter.send, call), plan.cluster), policy,
                        describe_result=adapter.describe_result,
                        describe_error=adapter.describe_error, budget=plan.budget,
                        idempotent=plan.idempotent(call), replayable=True,
                        deadline=_deadline(call_at), name=plan.name,
                    )  # fmt: skip
                else:  # the first try, admitted; then, only if it is retriable, the retries
                    first: FirstTry[T] | None = None
                    attempt = plan.first_try(policy, call_at)
                    admission = plan.admission
                    if not plan.start_call():
                        _admit_first(plan, attempt.deadline)
                    # The call is active in the budget and its first try holds its slots.
                    try:
                        try:
                            if not adapter.reads_deadline or attempt.deadline is None:
                                value = adapter.send(call, attempt)
                            else:
                                token = enter_deadline(attempt.deadline)
                                try:
                                    value = adapter.send(call, attempt)
                                finally:
                                    exit_deadline(token)
                        except Exception as error:
                            if policy.num_retries == 0 or not plan.retriable(policy, error, call):
                                raise
                            first = FirstTry(attempt, error=error)
                        else:
                            if (
                                policy.num_retries == 0
                                or plan.answer_final
                                or (not plan.checks_answers and adapter.settled(value))
                                or plan.final(policy, value, call)
                            ):
                                plan.end_call()
                                if admission.waiting:
                                    admission.notify_freed()
                            else:
                                first = FirstTry(attempt, value=value)
                    except BaseException:
                        admission.end_call()
                        raise
                    if first is not None:
                        admission.exit()  # the first try's slots; the call stays active
                        try:
                            value = run_with_retries(
                                admitted(partial(adapter.send, call), plan.cluster), policy,
                                describe_result=adapter.describe_result,
                                describe_error=adapter.describe_error, budget=plan.budget,
                                idempotent=plan.idempotent(call),
                                replayable=adapter.replayable(call),
                                deadline=_deadline(call_at), name=plan.name, first_try=first,
                            )  # fmt: skip
                        finally:
                            plan.budget.request_finished()
            except Exception as error:
                if breaker is not None:
                    plan.record(None, error, started)
                raise
            if breaker is not None:
                if plan.answers_succeed:  # a success, unclassified (record_breaker's branch)
                    breaker.record_success(_monotonic() - started)
                else:
                    plan.record(value, None, started)
            return value
        finally:
            if faulted:
                finish_stages(faulted)
    except Exception as error:
        return adapter.answer(error, call)


def _admit_first(plan: CallPlan[C, T], deadline: Deadline | None) -> None:
    """A call's first try when the thresholds' one-step admission said no: count the
    call in the budget and admit the try (overflow, or pending until ``deadline``)."""
    plan.budget.request_started()
    try:
        plan.admission.enter(deadline)
    except BaseException:
        plan.budget.request_finished()
        raise


async def _admit_first_async(plan: CallPlan[C, T], deadline: Deadline | None) -> None:
    """The async twin of :func:`_admit_first`."""
    plan.budget.request_started()
    try:
        await plan.admission.enter_async(deadline)
    except BaseException:
        plan.budget.request_finished()
        raise


# --- the async driver -----------------------------------------------------------


async def run_async(plan: CallPlan[C, T], call: C, caller_timeout: float | None = None) -> T:
    """The async twin of :func:`run_sync`, written as one coroutine: each await level
    would be resumed at every wake-up of the network wait, so the guards and the first
    try share this frame. A try is cancelled at its deadline unless the send bounds
    itself."""
    adapter = plan.adapter
    try:
        now = _monotonic()
        outer_at = plan.outer_at(caller_timeout, now)
        headers = NO_HEADERS if plan.headerless else adapter.headers(call)
        if not plan.stages:
            faulted = NOTHING_FAULTED
        elif headers is NO_HEADERS and plan.faults_need_headers:
            for limiter in plan.limiters:  # no fault can apply: only the limits act
                limiter.check()
            faulted = NOTHING_FAULTED
        else:
            faulted = await plan.enter_async(headers, outer_at)
        try:
            if faulted:  # a fault delay may have been awaited: the route timeout starts now
                now = _monotonic()
            call_at = outer_at if plan.timeout_s is None else plan.call_at(outer_at, now)
            breaker = plan.breaker
            started = 0.0
            if breaker is not None:
                breaker.acquire()
                started = _monotonic()
            try:
                policy = plan.policy or plan.policy_for(headers, call)
                first: FirstTry[T] | None = None
                if policy.hedge_on_per_try_timeout and plan.hedged(policy, call):
                    value = await async_run_hedged(
                        async_admitted(partial(adapter.send_async, call), plan.cluster),
                        policy, describe_result=adapter.describe_result,
                        describe_error=adapter.describe_error, budget=plan.budget,
                        idempotent=plan.idempotent(call), replayable=True,
                        deadline=_deadline(call_at), name=plan.name,
                    )  # fmt: skip
                else:  # the first try, admitted, as in _tries
                    attempt = plan.first_try(policy, call_at)
                    admission = plan.admission
                    if not plan.start_call():
                        await _admit_first_async(plan, attempt.deadline)
                    try:
                        try:
                            token = timer = None
                            deadline = attempt.deadline
                            if deadline is not None:
                                if adapter.reads_deadline:
                                    token = enter_deadline(deadline)
                                if not adapter.bounds_itself:
                                    timer = TryTimer(deadline.at - _monotonic())
                            try:
                                value = await adapter.send_async(call, attempt)
                            except asyncio.CancelledError:
                                if timer is None or not timer.fired():
                                    raise
                                raise try_timeout_error(attempt, policy, plan.name) from None
                            finally:
                                if timer is not None:
                                    timer.cancel()
                                if token is not None:
                                    exit_deadline(token)
                        except Exception as error:
                            if policy.num_retries == 0 or not plan.retriable(policy, error, call):
                                raise
                            first = FirstTry(attempt, error=error)
                        else:
                            if (
                                policy.num_retries == 0
                                or plan.answer_final
                                or (not plan.checks_answers and adapter.settled(value))
                                or plan.final(policy, value, call)
                            ):
                                plan.end_call()
                                if admission.waiting:
                                    admission.notify_freed()
                            else:
                                first = FirstTry(attempt, value=value)
                    except BaseException:
                        admission.end_call()
                        raise
                    if first is not None:  # only if retriable: the retries
                        admission.exit()  # the first try's slots; the call stays active
                        try:
                            value = await async_run_with_retries(
                                async_admitted(partial(adapter.send_async, call), plan.cluster),
                                policy, describe_result=adapter.describe_result,
                                describe_error=adapter.describe_error, budget=plan.budget,
                                idempotent=plan.idempotent(call),
                                replayable=adapter.replayable(call),
                                deadline=_deadline(call_at), name=plan.name, first_try=first,
                            )  # fmt: skip
                        finally:
                            plan.budget.request_finished()
            except Exception as error:
                if breaker is not None:
                    plan.record(None, error, started)
                raise
            if breaker is not None:
                if plan.answers_succeed:  # a success, unclassified (record_breaker's branch)
                    breaker.record_success(_monotonic() - started)
                else:
                    plan.record(value, None, started)
            return value
        finally:
            if faulted:
                finish_stages(faulted)
    except Exception as error:
        return adapter.answer(error, call)


# --- a call that is not replayed (streams) ------------------------------------------


def single_try(plan: CallPlan[C, T], call: C, caller_timeout: float | None = None) -> Attempt:
    """Everything before a call that is not replayed starts (a stream, ``future()``):
    the deadline and the stages. Returns its one try's attempt (its deadline: the
    call's); raises meshlib's errors."""
    outer_at = plan.outer_at(caller_timeout, _monotonic())
    if plan.stages:
        finish_stages(
            plan.enter((NO_HEADERS if plan.headerless else plan.adapter.headers(call)), outer_at)
        )
    return plan.first_attempt(outer_at, outer_at)


async def single_try_async(
    plan: CallPlan[C, T], call: C, caller_timeout: float | None = None
) -> Attempt:
    """The async twin of :func:`single_try` (a fault delay is awaited)."""
    outer_at = plan.outer_at(caller_timeout, _monotonic())
    headers = NO_HEADERS if plan.headerless else plan.adapter.headers(call)
    if plan.waits_in_stages(headers):
        finish_stages(await plan.enter_async(headers, outer_at))
    elif plan.stages:
        finish_stages(plan.enter(headers, outer_at))
    return plan.first_attempt(outer_at, outer_at)


# --- a plain function as the try ------------------------------------------------------


class _FunctionTry(TryAdapter[None, T], Generic[T]):
    """A plain ``send(attempt)`` as a plan's adapter (the function picks and sends)."""

    reads_deadline = True
    __slots__ = ("_error", "_headers", "_method", "_replayable", "_result", "_send", "_send_async")

    def __init__(
        self,
        send: Callable[[Attempt], T] | None,
        send_async: Callable[[Attempt], Awaitable[T]] | None,
        describe_result: Callable[[T], Outcome],
        describe_error: Callable[[BaseException], Outcome],
        headers: Mapping[str, str],
        method: str | None,
        replayable: bool,
    ) -> None:
        self._send, self._send_async = send, send_async
        self._result, self._error = describe_result, describe_error
        self._headers, self._method, self._replayable = headers, method, replayable

    def send(self, call: None, attempt: Attempt) -> T:
        assert self._send is not None
        return self._send(attempt)

    def send_async(self, call: None, attempt: Attempt) -> Awaitable[T]:
        assert self._send_async is not None
        return self._send_async(attempt)

    def describe_result(self, value: T) -> Outcome:
        return self._result(value)

    def describe_error(self, error: BaseException) -> Outcome:
        return self._error(error)

    def headers(self, call: None) -> Mapping[str, str]:
        return self._headers

    def method(self, call: None) -> str | None:
        return self._method

    def replayable(self, call: None) -> bool:
        return self._replayable


class _BoundedFunctionTry(_FunctionTry[T]):
    __slots__ = ()
    bounds_itself = True


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
    """Run ``send`` (one try: pick avoiding ``attempt.excluded_endpoints``, record
    ``attempt.endpoint``, send within ``attempt.timeout_s``) as a mesh call.

    ``caller_timeout_s`` (gRPC's ``timeout=``) bounds the whole call, a fault delay
    included; ``timeout_s`` (HTTP's route timeout) starts after the fault stages, as
    Envoy's router starts it after the fault filter. The enclosing deadline bounds both.
    """
    adapter = _FunctionTry(send, None, describe_result, describe_error, headers, method, replayable)
    plan = CallPlan(route, cluster, cluster.name, adapter, name, timeout_s=timeout_s)
    return run_sync(plan, None, caller_timeout_s)


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
    """The async twin of :func:`resilient_call`; a try is cancelled at its deadline
    unless ``send_bounds_itself`` (the send enforces ``attempt.timeout_s`` itself)."""
    kind = _BoundedFunctionTry if send_bounds_itself else _FunctionTry
    adapter: _FunctionTry[T] = kind(
        None, send, describe_result, describe_error, headers, method, replayable
    )
    plan = CallPlan(route, cluster, cluster.name, adapter, name, timeout_s=timeout_s)
    return await run_async(plan, None, caller_timeout_s)


__all__ = [
    "admitted",
    "async_admitted",
    "async_resilient_call",
    "is_failure",
    "record_breaker",
    "resilient_call",
    "run_async",
    "run_sync",
    "single_try",
    "single_try_async",
]
