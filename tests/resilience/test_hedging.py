"""Hedging runs real tries concurrently; per-try timeouts are a few milliseconds."""

from __future__ import annotations

import asyncio
import threading

import pytest

from meshlib.errors import DeadlineExceeded, RequestNotReplayable
from meshlib.resilience.backoff import BackOff
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import Outcome, RetryOn
from meshlib.resilience.deadline import Deadline, current_deadline
from meshlib.resilience.hedging import async_run_hedged, run_hedged
from meshlib.resilience.retry import Attempt, RetryPolicy

POLICY = RetryPolicy(
    num_retries=2,
    retry_on=RetryOn.parse("5xx"),
    per_try_timeout_s=0.02,
    hedge_on_per_try_timeout=True,
    back_off=BackOff(base_interval_s=0.001),
)


def _abandoned(attempt: Attempt) -> threading.Event:
    assert attempt.abandoned is not None  # hedged tries always carry the event
    return attempt.abandoned


def describe(answer: str) -> Outcome:
    return Outcome(status=503 if answer == "503" else 200)


def test_sync_hedge_wins_and_the_slow_try_is_abandoned() -> None:
    attempts: list[Attempt] = []
    abandoned = threading.Event()

    def one_try(attempt: Attempt) -> str:
        attempts.append(attempt)
        attempt.endpoint = f"ep{attempt.number}"
        if attempt.number == 1:
            if _abandoned(attempt).wait(timeout=5):
                abandoned.set()
            return "slow"
        return "fast"

    assert run_hedged(one_try, POLICY, describe_result=describe) == "fast"
    assert abandoned.wait(timeout=5)  # the loser was told, and its thread ended
    assert len(attempts) == 2 and attempts[1].hedge
    assert attempts[1].excluded_endpoints == {"ep1"}  # a hedge goes to another endpoint


def test_sync_original_still_wins_when_it_answers_first() -> None:
    release = threading.Event()

    def one_try(attempt: Attempt) -> str:
        if attempt.number == 1:
            release.wait(timeout=0.04)
            return "original"
        _abandoned(attempt).wait(timeout=5)
        return "hedge"

    assert run_hedged(one_try, POLICY, describe_result=describe) == "original"


def test_sync_hedges_are_bounded_by_num_retries_and_the_deadline() -> None:
    started: list[int] = []

    def stall(attempt: Attempt) -> str:
        started.append(attempt.number)
        _abandoned(attempt).wait(timeout=5)
        return "late"

    with pytest.raises(DeadlineExceeded, match="hedging"):
        run_hedged(stall, POLICY, describe_result=describe, deadline=Deadline.after(0.15))
    assert sorted(started) == [1, 2, 3]


def test_sync_retriable_answer_is_retried_not_hedged() -> None:
    attempts: list[Attempt] = []

    def one_try(attempt: Attempt) -> str:
        attempts.append(attempt)
        return "503" if attempt.number == 1 else "ok"

    assert run_hedged(one_try, POLICY, describe_result=describe) == "ok"
    assert [a.hedge for a in attempts] == [False, False]


def test_sync_tries_see_the_call_deadline() -> None:
    seen: list[Deadline | None] = []

    def one_try(attempt: Attempt) -> str:
        seen.append(current_deadline())
        return "ok"

    deadline = Deadline.after(5.0)
    run_hedged(one_try, POLICY, describe_result=describe, deadline=deadline)
    assert seen == [deadline]


def test_budget_caps_hedges() -> None:
    budget = RetryBudget.fixed(0)
    started: list[int] = []

    def one_try(attempt: Attempt) -> str:
        started.append(attempt.number)
        if attempt.number == 1:
            threading.Event().wait(0.05)
        return "ok"

    assert run_hedged(one_try, POLICY, describe_result=describe, budget=budget) == "ok"
    assert started == [1] and budget.stats().retry_overflow >= 1


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(num_retries=1, retry_on=RetryOn.parse("5xx")),
        RetryPolicy(num_retries=1, retry_on=RetryOn.parse("5xx"), per_try_timeout_s=5.0),
    ],
)
def test_without_hedging_configured_it_is_plain_retrying(policy: RetryPolicy) -> None:
    calls: list[tuple[int, bool]] = []

    def one_try(attempt: Attempt) -> str:
        calls.append((attempt.number, attempt.hedge))
        return "503" if attempt.number == 1 else "ok"

    assert run_hedged(one_try, policy, describe_result=describe) == "ok"
    assert calls == [(1, False), (2, False)]


def test_unreplayable_requests_are_not_hedged() -> None:
    def one_try(attempt: Attempt) -> str:
        return "503"

    with pytest.raises(RequestNotReplayable):
        run_hedged(one_try, POLICY, describe_result=describe, replayable=False)


async def test_async_first_good_answer_wins_and_losers_are_cancelled() -> None:
    cancelled: list[int] = []
    attempts: list[Attempt] = []

    async def one_try(attempt: Attempt) -> str:
        attempts.append(attempt)
        attempt.endpoint = f"ep{attempt.number}"
        if attempt.number == 1:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(attempt.number)
                raise
        return "fast"

    assert await async_run_hedged(one_try, POLICY, describe_result=describe) == "fast"
    assert cancelled == [1]
    assert attempts[1].excluded_endpoints == {"ep1"}


async def test_async_hedges_bounded_and_deadline_cancels_all() -> None:
    cancelled: list[int] = []

    async def stall(attempt: Attempt) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(attempt.number)
            raise
        return "late"

    budget = RetryBudget()
    with pytest.raises(DeadlineExceeded):
        await async_run_hedged(
            stall, POLICY, describe_result=describe, deadline=Deadline.after(0.12), budget=budget
        )
    assert sorted(cancelled) == [1, 2, 3]
    stats = budget.stats()
    assert stats.active_retries == 0 and stats.active_requests == 0 and stats.retries_started == 2


async def test_async_retriable_answers_exhaust_to_the_last_answer() -> None:
    async def fail(attempt: Attempt) -> str:
        return "503"

    assert await async_run_hedged(fail, POLICY, describe_result=describe) == "503"
