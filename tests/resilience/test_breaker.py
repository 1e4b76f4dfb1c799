from __future__ import annotations

import pytest

from meshlib.errors import CircuitOpenError, ResilienceValueError
from meshlib.resilience.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    WindowType,
)
from meshlib.resilience.sliding_window import CountWindow, TimeWindow
from tests.resilience.fakes import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def _breaker(clock: FakeClock, **config: object) -> CircuitBreaker:
    settings: dict[str, object] = {
        "sliding_window_size": 10,
        "minimum_number_of_calls": 4,
        "wait_duration_in_open_state_s": 30.0,
        "permitted_number_of_calls_in_half_open_state": 2,
        "slow_call_duration_s": 1.0,
    }
    settings.update(config)
    return CircuitBreaker("sessions", BreakerConfig(**settings), clock=clock)  # type: ignore[arg-type]


def _calls(breaker: CircuitBreaker, pattern: str, duration: float = 0.01) -> None:
    for outcome in pattern:
        breaker.acquire()
        if outcome == "F":
            breaker.on_failure(duration)
        else:
            breaker.on_success(duration)


def test_count_window_trips_at_the_failure_rate_after_minimum_calls() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    _calls(breaker, "FFF")  # 100% failures, but fewer than minimum_number_of_calls
    assert breaker.state is CLOSED
    _calls(breaker, "S")  # 4 calls, 75% >= 50%
    assert breaker.state is OPEN
    assert breaker.transitions == {(CLOSED, OPEN): 1}


def test_failure_rate_below_threshold_stays_closed_and_window_slides() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, sliding_window_size=4)
    _calls(breaker, "FSSS")  # 25%
    assert breaker.state is CLOSED
    _calls(breaker, "SSSS")  # the failure slid out
    assert breaker.snapshot().failures == 0
    _calls(breaker, "FF")  # window: S S F F -> 50%
    assert breaker.state is OPEN


def test_open_rejects_with_retry_after_then_half_open_after_the_wait() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    _calls(breaker, "FFFF")
    clock.advance(10.0)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    error = caught.value
    assert error.name == "sessions" and error.state == "OPEN"
    assert error.retry_after_s == pytest.approx(20.0)
    assert error.http_status == 503 and error.grpc_status == 14
    assert breaker.rejected == 1
    clock.advance(20.0)
    assert breaker.state is HALF_OPEN


def test_half_open_permits_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    _calls(breaker, "FFFF")
    clock.advance(30.0)
    breaker.acquire()
    breaker.acquire()
    assert not breaker.try_acquire()  # only 2 trial calls
    breaker.on_success(0.01)
    assert breaker.state is HALF_OPEN
    breaker.on_success(0.01)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0  # a fresh window


def test_half_open_reopens_when_trials_fail() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    _calls(breaker, "FFFF")
    clock.advance(30.0)
    _calls(breaker, "SF")  # 50% >= 50%
    assert breaker.state is OPEN
    assert breaker.transitions[(HALF_OPEN, OPEN)] == 1


def test_ignored_outcome_gives_the_half_open_permit_back() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, ignore_exceptions=(KeyError,))
    _calls(breaker, "FFFF")
    clock.advance(30.0)
    breaker.acquire()
    breaker.acquire()
    breaker.on_error(KeyError("ignored"), 0.01)
    assert breaker.try_acquire()


def test_is_failure_decides_what_counts() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, is_failure=lambda e: not isinstance(e, ValueError))
    for _ in range(4):
        breaker.acquire()
        breaker.on_error(ValueError("client bug"), 0.01)
    assert breaker.state is CLOSED
    for _ in range(4):
        breaker.acquire()
        breaker.on_error(ConnectionError("down"), 0.01)
    assert breaker.state is OPEN


def test_slow_calls_trip_the_breaker() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, slow_call_rate_threshold=50.0)
    _calls(breaker, "SSSS", duration=0.5)
    assert breaker.state is CLOSED
    _calls(breaker, "SSSS", duration=1.0)  # 4 of 8 slow
    assert breaker.state is OPEN


def test_time_window_forgets_old_seconds() -> None:
    clock = FakeClock(start=100.0)
    breaker = _breaker(clock, sliding_window_type=WindowType.TIME_BASED, sliding_window_size=5)
    _calls(breaker, "FF")
    clock.advance(6.0)  # those failures are older than the 5 s window
    _calls(breaker, "SS")
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 2
    _calls(breaker, "F")  # 1 of 3 recent calls: below minimum_number_of_calls anyway
    assert breaker.state is CLOSED
    _calls(breaker, "F")  # 2 of the 4 calls within the window: 50%
    assert breaker.state is OPEN


def test_max_wait_in_half_open_reopens() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, max_wait_duration_in_half_open_state_s=5.0)
    _calls(breaker, "FFFF")
    clock.advance(30.0)
    breaker.acquire()
    clock.advance(5.0)
    assert breaker.state is OPEN


def test_guard_records_exceptions_and_durations() -> None:
    clock = FakeClock()
    breaker = _breaker(clock)
    for _ in range(4):
        with pytest.raises(ConnectionError), breaker.guard():
            clock.advance(0.1)
            raise ConnectionError("down")
    assert breaker.state is OPEN


def test_listeners_and_registry() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock)
    breaker = registry.get("c1", BreakerConfig(minimum_number_of_calls=1, sliding_window_size=1))
    assert registry.get("c1") is breaker and registry.names() == ["c1"]
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    breaker.add_listener(lambda name, old, new: seen.append((name, old, new)))
    _calls(breaker, "F")
    breaker.reset()
    assert seen == [("c1", CLOSED, OPEN), ("c1", OPEN, CLOSED)]


def test_config_validation() -> None:
    with pytest.raises(ResilienceValueError, match="failure_rate_threshold"):
        BreakerConfig(failure_rate_threshold=0)
    with pytest.raises(ResilienceValueError, match="minimum_number_of_calls"):
        BreakerConfig(minimum_number_of_calls=0)
    with pytest.raises(ResilienceValueError, match="sliding_window_size"):
        CountWindow(0)
    with pytest.raises(ResilienceValueError, match="seconds"):
        TimeWindow(0, FakeClock())
