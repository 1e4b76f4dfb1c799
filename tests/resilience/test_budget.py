from __future__ import annotations

import asyncio
import random
import threading
from contextlib import AbstractContextManager

import pytest

from meshlib.errors import ResilienceValueError
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import Outcome, RetryOn
from meshlib.resilience.retry import Attempt, RetryPolicy, async_run_with_retries


def _enter(budget: RetryBudget, requests: int) -> list[AbstractContextManager[None]]:
    managers: list[AbstractContextManager[None]] = [budget.track_request() for _ in range(requests)]
    for manager in managers:
        manager.__enter__()
    return managers


def _exit(managers: list[AbstractContextManager[None]]) -> None:
    for manager in managers:
        manager.__exit__(None, None, None)


def test_limit_is_the_larger_of_min_concurrency_and_the_percentage() -> None:
    budget = RetryBudget(budget_percent=20.0, min_retry_concurrency=3)
    assert budget.stats().limit == 3.0
    managers = _enter(budget, 100)
    assert budget.stats().limit == 20.0
    granted = sum(budget.try_acquire_retry() for _ in range(30))
    assert granted == 20
    stats = budget.stats()
    assert stats.active_retries == 20 and stats.retry_overflow == 10
    for _ in range(20):
        budget.release_retry()
    _exit(managers)
    assert budget.stats().active_requests == 0


def test_fixed_max_retries_without_a_budget() -> None:
    budget = RetryBudget.fixed(2)
    managers = _enter(budget, 1000)
    assert [budget.try_acquire_retry() for _ in range(3)] == [True, True, False]
    budget.release_retry()
    assert budget.try_acquire_retry()
    _exit(managers)


def test_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="release without acquire"):
        RetryBudget(name="c").release_retry()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget_percent": 101.0}, "budget_percent"),
        ({"min_retry_concurrency": -1}, "min_retry_concurrency"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_validation(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ResilienceValueError, match=field):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_thread_safety_never_exceeds_the_limit() -> None:
    budget = RetryBudget.fixed(5)
    held = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal held, peak
        for _ in range(300):
            if budget.try_acquire_retry():
                with lock:
                    held += 1
                    peak = max(peak, held)
                with lock:
                    held -= 1
                budget.release_retry()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert peak <= 5 and budget.stats().active_retries == 0


async def _storm(budget: RetryBudget | None, *, calls: int, concurrency: int) -> float:
    """Upstream load per call when every try fails (503) and callers retry 3 times."""
    tries = 0
    rng = random.Random(1)

    async def one_try(attempt: Attempt) -> int:
        nonlocal tries
        tries += 1
        for _ in range(rng.randrange(1, 5)):  # tries overlap, as real requests do
            await asyncio.sleep(0)
        return 503

    async def no_backoff(_seconds: float) -> None:
        await asyncio.sleep(0)

    policy = RetryPolicy(num_retries=3, retry_on=RetryOn.parse("5xx"))
    slots = asyncio.Semaphore(concurrency)

    async def call() -> int:
        async with slots:
            return await async_run_with_retries(
                one_try, policy, describe_result=lambda s: Outcome(status=s),
                budget=budget, sleep=no_backoff,
            )  # fmt: skip

    answers = await asyncio.gather(*(call() for _ in range(calls)))
    assert set(answers) == {503}
    return tries / calls


async def test_budget_bounds_amplification_under_total_failure() -> None:
    budget = RetryBudget(budget_percent=20.0, min_retry_concurrency=3)
    amplification = await _storm(budget, calls=1000, concurrency=100)
    # At most 20% of active calls may be retrying at any time: about 1.2x.
    assert 1.1 <= amplification <= 1.25
    assert budget.stats().retry_overflow > 0
    assert await _storm(None, calls=500, concurrency=100) == 4.0  # naive: 1 + 3 retries
