from __future__ import annotations

import asyncio

import pytest

from meshlib.errors import (
    DeadlineExceeded,
    PerTryTimeoutError,
    RequestNotReplayable,
    ResilienceValueError,
)
from meshlib.resilience.backoff import BackOff, RateLimitedBackOff
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import FailureKind, Outcome, RetryOn
from meshlib.resilience.deadline import Deadline, current_deadline, deadline_scope
from meshlib.resilience.retry import (
    Attempt,
    RetryPolicy,
    async_run_with_retries,
    describe_exception,
    run_with_retries,
)
from tests.resilience.fakes import FakeClock, FixedRandom


class Upstream:
    """Answers a scripted list of HTTP statuses (or raises exceptions), one per try."""

    def __init__(self, *answers: int | BaseException) -> None:
        self.answers = list(answers)
        self.attempts: list[Attempt] = []

    def __call__(self, attempt: Attempt) -> tuple[int, dict[str, str]]:
        self.attempts.append(attempt)
        attempt.endpoint = f"10.0.0.{attempt.number}:8080"
        answer = self.answers[min(len(self.attempts), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        headers = {"retry-after": "7"} if answer == 429 else {}
        return answer, headers


def describe(answer: tuple[int, dict[str, str]]) -> Outcome:
    return Outcome(status=answer[0], headers=answer[1])


def run(upstream: Upstream, policy: RetryPolicy, clock: FakeClock, **kwargs: object) -> int:
    answer = run_with_retries(
        upstream, policy, describe_result=describe, sleep=clock.sleep, clock=clock,
        rng=FixedRandom(0.5), **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    return answer[0]


def test_retries_until_a_good_answer_with_jittered_backoff() -> None:
    clock = FakeClock()
    upstream = Upstream(503, 503, 200)
    policy = RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx"))
    assert run(upstream, policy, clock) == 200
    assert [a.number for a in upstream.attempts] == [1, 2, 3]
    assert clock.sleeps == pytest.approx([0.5 * 0.025, 0.5 * 0.075])


def test_exhausted_retries_return_the_last_answer() -> None:
    clock = FakeClock()
    upstream = Upstream(503)
    assert run(upstream, RetryPolicy(num_retries=2, retry_on=RetryOn.parse("5xx")), clock) == 503
    assert len(upstream.attempts) == 3


def test_exhausted_retries_reraise_the_last_exception() -> None:
    clock = FakeClock()
    upstream = Upstream(ConnectionRefusedError("first"), ConnectionRefusedError("last"))
    policy = RetryPolicy(num_retries=1, retry_on=RetryOn.parse("connect-failure"))
    with pytest.raises(ConnectionRefusedError, match="last"):
        run(upstream, policy, clock)


def test_non_retriable_answers_and_errors_return_at_once() -> None:
    clock = FakeClock()
    policy = RetryPolicy(num_retries=3, retry_on=RetryOn.parse("gateway-error"))
    assert run(Upstream(500), policy, clock) == 500
    upstream = Upstream(ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        run(upstream, policy, clock)
    assert len(upstream.attempts) == 1


def test_previous_hosts_are_excluded_from_later_tries() -> None:
    clock = FakeClock()
    upstream = Upstream(503, 503, 200)
    run(upstream, RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx")), clock)
    excluded = [sorted(a.excluded_endpoints) for a in upstream.attempts]
    assert excluded == [[], ["10.0.0.1:8080"], ["10.0.0.1:8080", "10.0.0.2:8080"]]
    upstream = Upstream(503, 200)
    policy = RetryPolicy(num_retries=1, retry_on=RetryOn.parse("5xx"), retry_previous_hosts=False)
    run(upstream, policy, clock)
    assert upstream.attempts[1].excluded_endpoints == frozenset()


def test_retry_after_sets_the_backoff() -> None:
    clock = FakeClock()
    upstream = Upstream(429, 200)
    policy = RetryPolicy(
        num_retries=1,
        retry_on=RetryOn.parse("retriable-status-codes", retriable_status_codes=[429]),
        rate_limited_back_off=RateLimitedBackOff(),
    )
    assert run(upstream, policy, clock) == 200
    assert clock.sleeps == pytest.approx([7.0 * 1.25])  # interval + Envoy's lower-bound jitter


def test_no_retry_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    upstream = Upstream(429)
    policy = RetryPolicy(
        num_retries=5,
        retry_on=RetryOn.parse("429"),
        rate_limited_back_off=RateLimitedBackOff(),
    )
    assert run(upstream, policy, clock, deadline=Deadline.after(3.0, clock=clock)) == 429
    assert len(upstream.attempts) == 1 and clock.sleeps == []


def test_expired_deadline_starts_no_try() -> None:
    clock = FakeClock()
    upstream = Upstream(200)
    with deadline_scope(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(DeadlineExceeded):
            run(upstream, RetryPolicy(), clock)
    assert upstream.attempts == []


def test_each_try_runs_under_its_per_try_deadline() -> None:
    clock = FakeClock()
    seen: list[tuple[float | None, Deadline | None]] = []

    def one_try(attempt: Attempt) -> tuple[int, dict[str, str]]:
        seen.append((attempt.timeout_s, current_deadline()))
        return 200, {}

    policy = RetryPolicy(per_try_timeout_s=0.5)
    with deadline_scope(2.0, clock=clock):
        run_with_retries(one_try, policy, describe_result=describe, clock=clock)
    assert seen[0][0] == pytest.approx(0.5)
    assert seen[0][1] is not None and seen[0][1].remaining() == pytest.approx(0.5)
    with deadline_scope(0.2, clock=clock):
        run_with_retries(one_try, policy, describe_result=describe, clock=clock)
    assert seen[1][0] == pytest.approx(0.2)  # the call's deadline is shorter than the per-try one


def test_non_idempotent_requests_retry_only_what_never_reached_the_server() -> None:
    clock = FakeClock()
    policy = RetryPolicy(num_retries=2, retry_on=RetryOn.parse("5xx"))
    assert run(Upstream(503, 200), policy, clock, idempotent=False) == 503
    refused = Upstream(ConnectionRefusedError(), 200)
    assert run(refused, policy, clock, idempotent=False) == 200
    allowed = RetryPolicy(num_retries=2, retry_on=RetryOn.parse("5xx"), retry_non_idempotent=True)
    assert run(Upstream(503, 200), allowed, clock, idempotent=False) == 200


def test_unreplayable_body_refuses_the_retry_clearly() -> None:
    clock = FakeClock()
    policy = RetryPolicy(num_retries=2, retry_on=RetryOn.parse("5xx"))
    with pytest.raises(RequestNotReplayable, match="5xx") as caught:
        run(Upstream(503, 200), policy, clock, replayable=False)
    assert caught.value.last_result == (503, {})
    with pytest.raises(RequestNotReplayable) as caught:
        run(Upstream(ConnectionResetError("gone"), 200), policy, clock, replayable=False)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert run(Upstream(200), policy, clock, replayable=False) == 200  # no retry needed: fine


def test_budget_refusal_ends_retries_without_an_error_and_is_counted() -> None:
    clock = FakeClock()
    budget = RetryBudget.fixed(0)
    upstream = Upstream(503, 200)
    policy = RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx"))
    assert run(upstream, policy, clock, budget=budget) == 503
    stats = budget.stats()
    assert stats.retry_overflow == 1 and stats.active_retries == 0 and stats.active_requests == 0


def test_budget_slots_are_held_during_the_retry_and_given_back() -> None:
    clock = FakeClock()
    budget = RetryBudget(budget_percent=20.0, min_retry_concurrency=1)
    during: list[tuple[int, int]] = []

    def one_try(attempt: Attempt) -> tuple[int, dict[str, str]]:
        stats = budget.stats()
        during.append((stats.active_requests, stats.active_retries))
        return (503 if attempt.number < 3 else 200), {}

    policy = RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx"))
    run_with_retries(one_try, policy, describe_result=describe, budget=budget, sleep=clock.sleep)
    assert during == [(1, 0), (1, 1), (1, 1)]
    assert budget.stats().active_retries == 0 and budget.stats().retries_started == 2


def test_policy_validation() -> None:
    with pytest.raises(ResilienceValueError, match="num_retries"):
        RetryPolicy(num_retries=-1)
    with pytest.raises(ResilienceValueError, match="per_try_timeout"):
        RetryPolicy(per_try_timeout_s=0)


def test_describe_exception_maps_common_socket_errors() -> None:
    assert describe_exception(ConnectionRefusedError()).failure is FailureKind.CONNECT_FAILURE
    assert describe_exception(ConnectionResetError()).failure is FailureKind.RESET
    assert describe_exception(PerTryTimeoutError("t")).failure is FailureKind.TIMEOUT
    assert describe_exception(DeadlineExceeded("d")).failure is FailureKind.OTHER
    assert describe_exception(KeyError("k")).failure is FailureKind.OTHER


async def test_async_retries_and_previous_hosts() -> None:
    clock = FakeClock()
    upstream = Upstream(503, 503, 200)

    async def one_try(attempt: Attempt) -> tuple[int, dict[str, str]]:
        return upstream(attempt)

    answer = await async_run_with_retries(
        one_try, RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx")),
        describe_result=describe, sleep=clock.async_sleep, rng=FixedRandom(0.5),
    )  # fmt: skip
    assert answer[0] == 200 and len(clock.sleeps) == 2
    assert upstream.attempts[2].excluded_endpoints == {"10.0.0.1:8080", "10.0.0.2:8080"}


async def test_async_per_try_timeout_cancels_the_try_and_retries() -> None:
    cancelled: list[int] = []

    async def one_try(attempt: Attempt) -> tuple[int, dict[str, str]]:
        if attempt.number == 1:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(attempt.number)
                raise
        return 200, {}

    policy = RetryPolicy(
        num_retries=1, retry_on=RetryOn.parse("reset"), per_try_timeout_s=0.01,
        back_off=BackOff(base_interval_s=0.001),
    )  # fmt: skip
    answer = await async_run_with_retries(one_try, policy, describe_result=describe)
    assert answer[0] == 200 and cancelled == [1]


async def test_async_per_try_timeout_surfaces_when_retries_run_out() -> None:
    async def stall(attempt: Attempt) -> tuple[int, dict[str, str]]:
        await asyncio.sleep(10)
        return 200, {}

    policy = RetryPolicy(num_retries=0, per_try_timeout_s=0.005)
    with pytest.raises(PerTryTimeoutError, match="per-try timeout"):
        await async_run_with_retries(stall, policy, describe_result=describe)
    with deadline_scope(0.005), pytest.raises(DeadlineExceeded) as caught:
        await async_run_with_retries(stall, RetryPolicy(num_retries=0), describe_result=describe)
    assert not isinstance(caught.value, PerTryTimeoutError)
