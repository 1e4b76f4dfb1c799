from __future__ import annotations

import asyncio
import inspect

import pytest

from meshlib.errors import CircuitOpenError, DeadlineExceeded, ResilienceValueError
from meshlib.resilience import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    RetryBudget,
    circuit_breaker,
    current_deadline,
    deadline_scope,
    retry,
    timeout,
)
from tests.resilience.fakes import FakeClock


def test_sync_retry_retries_matching_exceptions_and_keeps_the_signature() -> None:
    clock = FakeClock()
    calls: list[int] = []

    @retry(attempts=3, on=ConnectionError, sleep=clock.sleep)
    def fetch(item: int, *, verbose: bool = False) -> str:
        """Fetch one item."""
        calls.append(item)
        if len(calls) < 3:
            raise ConnectionError("flaky")
        return f"item {item}"

    assert fetch(7) == "item 7" and calls == [7, 7, 7] and len(clock.sleeps) == 2
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Fetch one item."
    assert list(inspect.signature(fetch).parameters) == ["item", "verbose"]


def test_sync_retry_gives_up_with_the_last_error_and_ignores_others() -> None:
    clock = FakeClock()
    calls: list[str] = []

    @retry(attempts=2, on=lambda e: isinstance(e, OSError), sleep=clock.sleep)
    def always(kind: str) -> None:
        calls.append(kind)
        raise (OSError if kind == "os" else ValueError)(kind)

    with pytest.raises(OSError, match="os"):
        always("os")
    with pytest.raises(ValueError):
        always("value")
    assert calls == ["os", "os", "value"]


def test_retry_budget_is_shared_and_limits_retries() -> None:
    clock = FakeClock()
    budget = RetryBudget.fixed(0)
    calls: list[int] = []

    @retry(attempts=5, budget=budget, sleep=clock.sleep)
    def down() -> None:
        calls.append(1)
        raise ConnectionError

    with pytest.raises(ConnectionError):
        down()
    assert calls == [1] and budget.stats().retry_overflow == 1


async def test_async_retry() -> None:
    clock = FakeClock()
    calls: list[int] = []

    @retry(attempts=2, on=TimeoutError, async_sleep=clock.async_sleep, budget=False)
    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError
        return "ok"

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch() == "ok" and len(calls) == 2


def test_retry_validation() -> None:
    with pytest.raises(ResilienceValueError, match="attempts"):
        retry(attempts=0)


def test_sync_timeout_sets_the_deadline_and_flags_late_returns() -> None:
    seen: list[float | None] = []

    @timeout(5.0)
    def quick() -> str:
        deadline = current_deadline()
        seen.append(None if deadline is None else deadline.remaining())
        return "ok"

    assert quick() == "ok" and seen[0] is not None and 4.0 < seen[0] <= 5.0

    @timeout(0.001)
    def slow() -> str:
        deadline = current_deadline()
        assert deadline is not None
        while not deadline.expired():  # a cooperative function would stop here
            pass
        return "late"

    with pytest.raises(DeadlineExceeded, match=r"0\.001"):
        slow()


# Clocks far from the real monotonic clock on either side: an enclosing deadline on
# one must be compared with @timeout's (real-clock) deadline by the time each has left.
FAR_CLOCK_STARTS = [0.0, 1e9]


@pytest.mark.parametrize("start", FAR_CLOCK_STARTS)
def test_timeout_never_starts_expired_work(start: float) -> None:
    clock = FakeClock(start)
    started: list[int] = []

    @timeout(10.0)
    def work() -> None:
        started.append(1)

    with deadline_scope(1.0, clock=clock):
        clock.advance(2.0)
        with pytest.raises(DeadlineExceeded):
            work()
    assert started == []


@pytest.mark.parametrize("start", FAR_CLOCK_STARTS)
async def test_timeout_shortens_an_enclosing_deadline_on_another_clock(start: float) -> None:
    clock = FakeClock(start)

    def budget() -> float | None:
        deadline = current_deadline()
        return None if deadline is None else deadline.remaining()

    sync_budget = timeout(5.0)(budget)

    @timeout(5.0)
    async def async_budget() -> float | None:
        return budget()

    with deadline_scope(100.0, clock=clock):
        seen = [sync_budget(), await async_budget()]
        assert all(value is not None and 4.0 < value <= 5.0 for value in seen)
    with deadline_scope(3.0, clock=clock):  # the enclosing budget is the shorter one
        assert sync_budget() == pytest.approx(3.0)


async def test_async_timeout_cancels() -> None:
    cancelled: list[bool] = []

    @timeout(0.01)
    async def stall() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(DeadlineExceeded):
        await stall()
    assert cancelled == [True]

    @timeout(1.0)
    async def own_timeout() -> None:
        raise asyncio.TimeoutError  # not ours: passes through unchanged

    with pytest.raises(asyncio.TimeoutError):
        await own_timeout()


def test_circuit_breaker_by_name_and_instance() -> None:
    registry = BreakerRegistry()
    config = BreakerConfig(minimum_number_of_calls=3, sliding_window_size=3)

    @circuit_breaker("sessions", config=config, registry=registry)
    def call(fail: bool) -> str:
        if fail:
            raise ConnectionError
        return "ok"

    assert call(False) == "ok"
    with pytest.raises(ConnectionError):
        call(True)
    with pytest.raises(ConnectionError):
        call(True)
    with pytest.raises(CircuitOpenError):
        call(False)
    assert registry.get("sessions").state.value == "OPEN"


async def test_async_circuit_breaker() -> None:
    breaker = CircuitBreaker(
        "attendees", BreakerConfig(minimum_number_of_calls=1, sliding_window_size=1)
    )

    @circuit_breaker(breaker)
    async def call() -> str:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await call()
    with pytest.raises(CircuitOpenError):
        await call()
