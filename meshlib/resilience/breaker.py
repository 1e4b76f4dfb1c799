"""A failure-rate circuit breaker, with the states and settings resilience4j defines.

CLOSED: calls pass; outcomes go into a count- or time-based sliding window.
Once the window holds ``minimum_number_of_calls`` and the failure rate or the
slow-call rate reaches its threshold, the breaker trips to OPEN.
OPEN: calls are rejected with :class:`CircuitOpenError` until
``wait_duration_in_open_state`` has passed; the next call moves it to HALF_OPEN.
HALF_OPEN: ``permitted_number_of_calls_in_half_open_state`` trial calls pass
(others are rejected); when they have all completed the breaker closes, or
opens again if the rates are still at or above the thresholds. With
``max_wait_duration_in_half_open_state`` > 0 a half-open breaker whose trial
calls do not complete in time opens again.

A transport drives it per call: ``permit = breaker.acquire()`` before sending,
then ``breaker.on_success(duration)`` / ``on_failure(duration)`` /
``release()`` (an outcome that should not count). :meth:`guard` does all of it
around a block. Transitions are logged and counted; listeners can observe them.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from meshlib.errors import CircuitOpenError, ResilienceValueError
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.sliding_window import CountWindow, TimeWindow, WindowSnapshot

_log = get_logger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class WindowType(enum.Enum):
    COUNT_BASED = "COUNT_BASED"
    TIME_BASED = "TIME_BASED"


def _always(_error: BaseException) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """resilience4j ``CircuitBreakerConfig`` (same names and defaults; seconds for durations).

    ``is_failure`` decides whether an exception counts as a failure (else it
    counts as a success); exceptions of ``ignore_exceptions`` count as neither.
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration_s: float = 60.0
    permitted_number_of_calls_in_half_open_state: int = 10
    max_wait_duration_in_half_open_state_s: float = 0.0
    sliding_window_type: WindowType = WindowType.COUNT_BASED
    sliding_window_size: int = 100
    minimum_number_of_calls: int = 100
    wait_duration_in_open_state_s: float = 60.0
    is_failure: Callable[[BaseException], bool] = field(default=_always)
    ignore_exceptions: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 100.0:
                raise ResilienceValueError(f"circuit breaker: {name} {value} is not in (0, 100]")
        for name in ("permitted_number_of_calls_in_half_open_state", "minimum_number_of_calls"):
            if getattr(self, name) < 1:
                raise ResilienceValueError(f"circuit breaker: {name} must be >= 1")
        if self.wait_duration_in_open_state_s < 0 or self.slow_call_duration_s <= 0:
            raise ResilienceValueError("circuit breaker: durations must be positive")


StateListener = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """One breaker (per cluster, or per decorated function); thread-safe."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self.clock = clock
        self._lock = threading.RLock()  # listeners run under it and may read the state
        self._state = BreakerState.CLOSED
        self._window: CountWindow | TimeWindow = self._closed_window()
        self._opened_at = 0.0
        self._half_open_at = 0.0
        self._permits_left = 0
        self.transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        self.rejected = 0
        self._listeners: list[StateListener] = []
        config = self.config
        count_based = config.sliding_window_type is WindowType.COUNT_BASED
        #: Calls a CLOSED window needs before its rates are judged.
        self._needed = (
            min(config.minimum_number_of_calls, config.sliding_window_size)
            if count_based
            else config.minimum_number_of_calls
        )
        # In a count window that already holds enough calls, a fast success cannot
        # raise a rate, so it is recorded without judging (time windows age out calls,
        # so they are judged every time).
        self._plain_success_skips_judging = count_based

    def _closed_window(self) -> CountWindow | TimeWindow:
        if self.config.sliding_window_type is WindowType.TIME_BASED:
            return TimeWindow(self.config.sliding_window_size, self.clock)
        return CountWindow(self.config.sliding_window_size)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._advance_timers()
            return self._state

    def snapshot(self) -> WindowSnapshot:
        with self._lock:
            return self._window.snapshot()

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(name, old, new)`` on every transition (e.g. to count metrics)."""
        self._listeners.append(listener)

    # -- permission ---------------------------------------------------------------
    def try_acquire(self) -> bool:
        if self._state is BreakerState.CLOSED:  # no timers run while CLOSED: no lock needed
            return True
        with self._lock:
            self._advance_timers()
            state: BreakerState = self._state  # the timers may have moved it
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and self._permits_left > 0:
                self._permits_left -= 1
                return True
            self.rejected += 1
            return False

    def acquire(self) -> None:
        """Permit one call or raise :class:`CircuitOpenError`."""
        if self._state is BreakerState.CLOSED or self.try_acquire():
            return
        with self._lock:
            state = self._state
            retry_after = None
            if state is BreakerState.OPEN:
                wait = self.config.wait_duration_in_open_state_s
                retry_after = max(0.0, self._opened_at + wait - self.clock())
        resilience_metrics().breaker_rejection(self.name, "circuit_open")
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is {state.value}: call not permitted",
            name=self.name,
            state=state.value,
            retry_after_s=retry_after,
        )

    def release(self) -> None:
        """The permitted call ended with an outcome that does not count (ignored)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._permits_left += 1

    # -- outcomes -----------------------------------------------------------------
    def on_success(self, duration_s: float) -> None:
        self._record(failed=False, duration_s=duration_s)

    def record_success(self, duration_s: float) -> None:
        """:meth:`on_success` for the request path: a fast success in a CLOSED count
        window that already holds enough calls is recorded without judging."""
        if self._plain_success_skips_judging and duration_s < self.config.slow_call_duration_s:
            with self._lock:
                window = self._window
                if self._state is BreakerState.CLOSED and window.calls >= self._needed:
                    window.record(False, False)
                    return
        self._record(failed=False, duration_s=duration_s)

    def on_failure(self, duration_s: float) -> None:
        self._record(failed=True, duration_s=duration_s)

    def on_error(self, error: BaseException, duration_s: float) -> None:
        """Record an exception per the config (failure, success or ignored)."""
        if isinstance(error, self.config.ignore_exceptions):
            self.release()
        elif self.config.is_failure(error):
            self.on_failure(duration_s)
        else:
            self.on_success(duration_s)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Acquire, run the block, and record its outcome and duration."""
        self.acquire()
        started = self.clock()
        try:
            yield
        except BaseException as error:
            self.on_error(error, self.clock() - started)
            raise
        self.on_success(self.clock() - started)

    def reset(self) -> None:
        """Back to CLOSED with an empty window."""
        with self._lock:
            self._transition(BreakerState.CLOSED)

    # -- internals (lock held) ----------------------------------------------------------
    def _record(self, *, failed: bool, duration_s: float) -> None:
        slow = duration_s >= self.config.slow_call_duration_s
        with self._lock:
            closed = self._state is BreakerState.CLOSED
            if not closed:
                self._advance_timers()
                if self._state is BreakerState.OPEN:
                    return  # a call permitted before the trip finished late: ignored
            window = self._window
            if (
                closed
                and not failed
                and not slow
                and self._plain_success_skips_judging
                and window.calls >= self._needed
            ):
                window.record(False, False)
                return
            window.record(failed, slow)
            snapshot = window.snapshot()
            if closed:
                if snapshot.calls >= self._needed and self._over_threshold(snapshot):
                    self._transition(BreakerState.OPEN, snapshot)
            elif snapshot.calls >= self.config.permitted_number_of_calls_in_half_open_state:
                over = self._over_threshold(snapshot)
                self._transition(BreakerState.OPEN if over else BreakerState.CLOSED, snapshot)

    def _over_threshold(self, snapshot: WindowSnapshot) -> bool:
        return (
            snapshot.failure_rate >= self.config.failure_rate_threshold
            or snapshot.slow_call_rate >= self.config.slow_call_rate_threshold
        )

    def _advance_timers(self) -> None:
        now = self.clock()
        if (
            self._state is BreakerState.OPEN
            and now >= self._opened_at + self.config.wait_duration_in_open_state_s
        ):
            self._transition(BreakerState.HALF_OPEN)
        elif (
            self._state is BreakerState.HALF_OPEN
            and self.config.max_wait_duration_in_half_open_state_s > 0
            and now >= self._half_open_at + self.config.max_wait_duration_in_half_open_state_s
        ):
            self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState, snapshot: WindowSnapshot | None = None) -> None:
        old = self._state
        self._state = new
        now = self.clock()
        if new is BreakerState.OPEN:
            self._opened_at = now
        elif new is BreakerState.HALF_OPEN:
            self._half_open_at = now
            self._permits_left = self.config.permitted_number_of_calls_in_half_open_state
            self._window = CountWindow(self.config.permitted_number_of_calls_in_half_open_state)
        else:
            self._window = self._closed_window()
        if old is new and new is BreakerState.CLOSED:
            return
        self.transitions[(old, new)] = self.transitions.get((old, new), 0) + 1
        _log.warning(
            "circuit_breaker_transition",
            breaker=self.name,
            old=old.value,
            new=new.value,
            failure_rate=None if snapshot is None else round(snapshot.failure_rate, 2),
            slow_call_rate=None if snapshot is None else round(snapshot.slow_call_rate, 2),
        )
        resilience_metrics().breaker_transition(self.name, old.value, new.value)
        for listener in self._listeners:
            listener(self.name, old, new)


class BreakerRegistry:
    """Breakers by name, created on first use (one per cluster or decorated function)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        #: Bumped whenever a breaker is created: request paths that cached "no breaker
        #: for this cluster" look again when it moved.
        self.generation = 0

    def get(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker:
        """The breaker ``name``; ``config`` applies only when it is created here."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name, config, clock=self.clock)
                self._breakers[name] = breaker
                self.generation += 1
            return breaker

    def find(self, name: str) -> CircuitBreaker | None:
        """The breaker ``name`` if one exists (lock-free: one dict read, for the request path)."""
        return self._breakers.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._breakers)


breakers = BreakerRegistry()
"""The process-wide registry ``@circuit_breaker("name")`` uses."""
