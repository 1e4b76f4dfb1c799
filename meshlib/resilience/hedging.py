"""Hedging on per-try timeout (Envoy ``hedge_on_per_try_timeout``).

When a try has not answered within ``per_try_timeout``, another try starts on
a different endpoint while the first keeps running; the first answer that is
not retriable wins and the others are abandoned (async: their tasks are
cancelled; sync: tries run on a small thread pool, their ``attempt.abandoned``
event is set and their results are discarded). A retriable answer starts a
retry after the back-off, as without hedging. Hedges and retries together are
bounded by ``num_retries`` and take slots from the retry budget. Hedging needs
a replayable request (it sends the body twice at once); without one the call
runs with plain retries.

The decisions live in :class:`_HedgeRace`, shared by the sync and async drivers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from meshlib.errors import DeadlineExceeded
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.backoff import Random, wait_envoy_jitter
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.deadline import Deadline, current_deadline, deadline_scope
from meshlib.resilience.retry import (
    Attempt,
    RetryPolicy,
    async_run_with_retries,
    describe_exception,
    describe_success,
    run_with_retries,
)

_log = get_logger(__name__)

T = TypeVar("T")
K = TypeVar("K")  # the driver's handle for a running try (task or future)


@dataclass(slots=True)
class _Flight(Generic[K]):
    attempt: Attempt
    handle: K
    hedge_at: float | None  # when this try's per-try timer fires (None: fired)
    holds_slot: bool


@dataclass(frozen=True, slots=True)
class _Finish:
    """How the race ended: a winner's value, or an error to raise."""

    value: object = None
    error: BaseException | None = None


class _HedgeRace(Generic[T, K]):
    """State and decisions of one hedged call; the drivers only wait and launch."""

    def __init__(
        self,
        policy: RetryPolicy,
        per_try_timeout_s: float,
        *,
        describe_result: Callable[[T], Outcome],
        describe_error: Callable[[BaseException], Outcome],
        budget: RetryBudget | None,
        idempotent: bool,
        deadline: Deadline | None,
        rng: Random,
        clock: Callable[[], float],
        name: str,
    ) -> None:
        self.policy = policy
        self.per_try_timeout_s = per_try_timeout_s
        self.describe_result = describe_result
        self.describe_error = describe_error
        self.budget = budget
        self.idempotent = idempotent
        self.deadline = deadline
        self.rng = rng
        self.clock = clock
        self.name = name or "call"
        self.flights: dict[K, _Flight[K]] = {}
        self.previous: set[str] = set()
        self.tries_left = policy.num_retries
        self.retries = 0
        self.retry_at: float | None = None
        self.last: _Finish | None = None
        self._number = 0
        self._jitter = wait_envoy_jitter(policy.back_off, rng)

    def new_attempt(self, *, hedge: bool) -> Attempt:
        """The next try: it avoids previous and in-flight endpoints (previous-hosts)."""
        self._number += 1
        excluded: set[str] = set()
        if self.policy.retry_previous_hosts:
            excluded = self.previous | {
                f.attempt.endpoint for f in self.flights.values() if f.attempt.endpoint
            }
        return Attempt(
            self._number,
            frozenset(excluded),
            self.deadline,
            hedge=hedge,
            abandoned=threading.Event(),
        )

    def add(self, attempt: Attempt, handle: K, *, holds_slot: bool) -> None:
        hedge_at = self.clock() + self.per_try_timeout_s
        self.flights[handle] = _Flight(attempt, handle, hedge_at, holds_slot)

    def may_launch_another(self, why: str) -> bool:
        """Spend one of ``num_retries`` and a budget slot on another try, if both allow."""
        if self.tries_left <= 0:
            return False
        if self.budget is not None and not self.budget.try_acquire_retry():
            return False
        self.tries_left -= 1
        self.retries += 1
        if why == "per-try-timeout":
            resilience_metrics().hedge(self.name)
        else:
            resilience_metrics().retry(self.name, why)
        _log.info("hedge_try" if why == "per-try-timeout" else "retry", name=self.name, why=why)
        return True

    def due_hedges(self) -> int:
        """Tries whose per-try timer fired now: how many hedges to launch."""
        now = self.clock()
        count = 0
        for flight in self.flights.values():
            if flight.hedge_at is not None and flight.hedge_at <= now:
                flight.hedge_at = None
                if self.may_launch_another("per-try-timeout"):
                    count += 1
        return count

    def retry_due(self) -> bool:
        if self.retry_at is None or self.retry_at > self.clock():
            return False
        self.retry_at = None
        return self.may_launch_another("retriable answer")

    def next_wakeup(self) -> float | None:
        """Seconds until the next timer (per-try, back-off, deadline), or ``None``."""
        times = [f.hedge_at for f in self.flights.values() if f.hedge_at is not None]
        if self.retry_at is not None:
            times.append(self.retry_at)
        waits = [t - self.clock() for t in times] if times else []
        if self.deadline is not None:  # on its own clock, maybe not the race's
            waits.append(self.deadline.remaining())
        return max(0.0, min(waits)) if waits else None

    def finished(self, handle: K, value: T | None, error: BaseException | None) -> _Finish | None:
        """Record a try's end; return how the race ends, or ``None`` to keep going."""
        flight = self.flights.pop(handle)
        self._release(flight)
        if flight.attempt.endpoint is not None:
            self.previous.add(flight.attempt.endpoint)
        outcome = (
            self.describe_error(error)
            if error is not None
            else self.describe_result(cast(T, value))
        )
        finish = _Finish(value, error)
        if self.policy.retry_reason(outcome, idempotent=self.idempotent) is None:
            return finish
        self.last = finish
        if self.tries_left > 0 and self.retry_at is None:
            self.retry_at = self.clock() + self._backoff_s(outcome)
        return self.exhausted()

    def _backoff_s(self, outcome: Outcome) -> float:
        rate_limited = self.policy.rate_limited_back_off
        if rate_limited is not None:
            interval = rate_limited.interval(outcome.headers, wall_clock=time.time)
            if interval is not None:
                return interval * (1.0 + 0.5 * self.rng())
        return self.rng() * self._jitter.ceiling(self._number)

    def exhausted(self) -> _Finish | None:
        """The last answer, once nothing is in flight and nothing more may start."""
        if self.flights or (self.retry_at is not None and self.tries_left > 0):
            return None
        return self.last

    def deadline_passed(self) -> _Finish | None:
        if self.deadline is None or not self.deadline.expired():
            return None
        error = DeadlineExceeded(f"{self.name}: deadline exceeded while hedging")
        if self.last is not None and self.last.error is not None:
            error.__cause__ = self.last.error
        return _Finish(error=error)

    def abandon_all(self) -> list[K]:
        """Mark every in-flight try as lost and give back their budget slots."""
        handles = list(self.flights)
        for flight in self.flights.values():
            if flight.attempt.abandoned is not None:
                flight.attempt.abandoned.set()
            self._release(flight)
        self.flights.clear()
        return handles

    def _release(self, flight: _Flight[K]) -> None:
        if flight.holds_slot and self.budget is not None:
            self.budget.release_retry()
        flight.holds_slot = False


def _can_hedge(policy: RetryPolicy, replayable: bool) -> bool:
    return policy.hedge_on_per_try_timeout and policy.per_try_timeout_s is not None and replayable


def _unwrap(finish: _Finish) -> object:
    if finish.error is not None:
        raise finish.error
    return finish.value


def run_hedged(
    attempt_fn: Callable[[Attempt], T],
    policy: RetryPolicy,
    *,
    describe_result: Callable[[T], Outcome] = describe_success,
    describe_error: Callable[[BaseException], Outcome] = describe_exception,
    budget: RetryBudget | None = None,
    idempotent: bool = True,
    replayable: bool = True,
    deadline: Deadline | None = None,
    rng: Random = random.random,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
) -> T:
    """Sync hedged call on a small thread pool.

    Without ``hedge_on_per_try_timeout``, a per-try timeout or a replayable
    request this is exactly :func:`run_with_retries`, so a transport can always
    call this entry point.
    """
    if not _can_hedge(policy, replayable):
        return run_with_retries(
            attempt_fn, policy, describe_result=describe_result, describe_error=describe_error,
            budget=budget, idempotent=idempotent, replayable=replayable, deadline=deadline,
            rng=rng, clock=clock, name=name,
        )  # fmt: skip
    deadline = deadline if deadline is not None else current_deadline()
    if deadline is not None:
        deadline.check(name or "call")
    assert policy.per_try_timeout_s is not None
    race: _HedgeRace[T, concurrent.futures.Future[T]] = _HedgeRace(
        policy, policy.per_try_timeout_s, describe_result=describe_result,
        describe_error=describe_error, budget=budget, idempotent=idempotent,
        deadline=deadline, rng=rng, clock=clock, name=name,
    )  # fmt: skip
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=policy.num_retries + 1, thread_name_prefix="meshlib-hedge"
    )

    def launch(holds_slot: bool, hedge: bool) -> None:
        attempt = race.new_attempt(hedge=hedge)
        context = contextvars.copy_context()
        future = pool.submit(context.run, _run_sync_try, attempt_fn, attempt)
        race.add(attempt, future, holds_slot=holds_slot)

    tracked = budget.track_request() if budget is not None else contextlib.nullcontext()
    try:
        with tracked:
            launch(holds_slot=False, hedge=False)
            while True:
                wakeup = race.next_wakeup()
                if race.flights:
                    done, _ = concurrent.futures.wait(
                        list(race.flights), timeout=wakeup, return_when="FIRST_COMPLETED"
                    )
                else:
                    done = set()
                    time.sleep(wakeup or 0.0)
                for future in done:
                    error = future.exception()
                    value = future.result() if error is None else None
                    finish = race.finished(future, value, error)
                    if finish is not None:
                        return _unwrap(finish)  # type: ignore[return-value]
                finish = race.deadline_passed()
                if finish is not None:
                    return _unwrap(finish)  # type: ignore[return-value]
                for _ in range(race.due_hedges()):
                    launch(holds_slot=budget is not None, hedge=True)
                if race.retry_due():
                    launch(holds_slot=budget is not None, hedge=False)
                finish = race.exhausted()
                if finish is not None:
                    return _unwrap(finish)  # type: ignore[return-value]
    finally:
        for future in race.abandon_all():
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def _run_sync_try(attempt_fn: Callable[[Attempt], T], attempt: Attempt) -> T:
    with deadline_scope(deadline=attempt.deadline):
        return attempt_fn(attempt)


class _no_tracking:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def async_run_hedged(
    attempt_fn: Callable[[Attempt], Awaitable[T]],
    policy: RetryPolicy,
    *,
    describe_result: Callable[[T], Outcome] = describe_success,
    describe_error: Callable[[BaseException], Outcome] = describe_exception,
    budget: RetryBudget | None = None,
    idempotent: bool = True,
    replayable: bool = True,
    deadline: Deadline | None = None,
    rng: Random = random.random,
    clock: Callable[[], float] = time.monotonic,
    name: str = "",
) -> T:
    """The async twin of :func:`run_hedged`: losers' tasks are cancelled."""
    if not _can_hedge(policy, replayable):
        return await async_run_with_retries(
            attempt_fn, policy, describe_result=describe_result, describe_error=describe_error,
            budget=budget, idempotent=idempotent, replayable=replayable, deadline=deadline,
            rng=rng, clock=clock, name=name,
        )  # fmt: skip
    deadline = deadline if deadline is not None else current_deadline()
    if deadline is not None:
        deadline.check(name or "call")
    assert policy.per_try_timeout_s is not None
    race: _HedgeRace[T, asyncio.Task[T]] = _HedgeRace(
        policy, policy.per_try_timeout_s, describe_result=describe_result,
        describe_error=describe_error, budget=budget, idempotent=idempotent,
        deadline=deadline, rng=rng, clock=clock, name=name,
    )  # fmt: skip

    async def one_try(attempt: Attempt) -> T:
        with deadline_scope(deadline=attempt.deadline):
            return await attempt_fn(attempt)

    def launch(holds_slot: bool, hedge: bool) -> None:
        attempt = race.new_attempt(hedge=hedge)
        race.add(attempt, asyncio.ensure_future(one_try(attempt)), holds_slot=holds_slot)

    tracked = budget.track_request() if budget is not None else contextlib.nullcontext()
    try:
        with tracked:
            launch(holds_slot=False, hedge=False)
            while True:
                wakeup = race.next_wakeup()
                if race.flights:
                    done, _ = await asyncio.wait(
                        list(race.flights), timeout=wakeup, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    done = set()
                    await asyncio.sleep(wakeup or 0.0)
                for task in done:
                    error = task.exception()
                    value = task.result() if error is None else None
                    finish = race.finished(task, value, error)
                    if finish is not None:
                        return _unwrap(finish)  # type: ignore[return-value]
                finish = race.deadline_passed()
                if finish is not None:
                    return _unwrap(finish)  # type: ignore[return-value]
                for _ in range(race.due_hedges()):
                    launch(holds_slot=budget is not None, hedge=True)
                if race.retry_due():
                    launch(holds_slot=budget is not None, hedge=False)
                finish = race.exhausted()
                if finish is not None:
                    return _unwrap(finish)  # type: ignore[return-value]
    finally:
        losers = race.abandon_all()
        for task in losers:
            task.cancel()
        if losers:
            await asyncio.gather(*losers, return_exceptions=True)
