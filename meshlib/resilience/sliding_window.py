"""Sliding windows of call outcomes, as resilience4j's circuit breaker aggregates them.

- :class:`CountWindow`: the last N calls (a ring buffer with running totals).
- :class:`TimeWindow`: the calls of the last N seconds, aggregated per
  clock second (N partial buckets), so recording and reading are O(1) amortised.

Not thread-safe on their own: the breaker holds its lock around them.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

from meshlib.errors import ResilienceValueError


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    calls: int
    failures: int
    slow_calls: int

    @property
    def failure_rate(self) -> float:
        """Percent of calls that failed (0 when empty)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Percent of calls slower than the slow-call duration (0 when empty)."""
        return 100.0 * self.slow_calls / self.calls if self.calls else 0.0


class CountWindow:
    """The outcomes of the last ``size`` calls."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ResilienceValueError(f"sliding_window_size {size} must be > 0")
        self.size = size
        self._ring: collections.deque[tuple[bool, bool]] = collections.deque()
        self._failures = 0
        self._slow = 0
        #: Calls in the window (a plain attribute: read on every call).
        self.calls = 0

    def record(self, failed: bool, slow: bool) -> None:
        if self.calls == self.size:
            old_failed, old_slow = self._ring.popleft()
            self._failures -= old_failed
            self._slow -= old_slow
        else:
            self.calls += 1
        self._ring.append((failed, slow))
        self._failures += failed
        self._slow += slow

    def snapshot(self) -> WindowSnapshot:
        return WindowSnapshot(len(self._ring), self._failures, self._slow)


class TimeWindow:
    """The outcomes of the calls in the last ``size_s`` seconds, one bucket per second."""

    def __init__(self, size_s: int, clock: Callable[[], float]) -> None:
        if size_s <= 0:
            raise ResilienceValueError(f"sliding_window_size {size_s} (seconds) must be > 0")
        self.size_s = size_s
        self.clock = clock
        # Each bucket: [epoch_second, calls, failures, slow_calls].
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._calls = 0
        self._failures = 0
        self._slow = 0

    def _evict(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.size_s:
            _, calls, failures, slow = self._buckets.popleft()
            self._calls -= calls
            self._failures -= failures
            self._slow -= slow

    @property
    def calls(self) -> int:
        """Calls recorded in the window (some may be due to age out)."""
        return self._calls

    def record(self, failed: bool, slow: bool) -> None:
        second = math.floor(self.clock())
        self._evict(second)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self._calls += 1
        self._failures += failed
        self._slow += slow

    def snapshot(self) -> WindowSnapshot:
        self._evict(math.floor(self.clock()))
        return WindowSnapshot(self._calls, self._failures, self._slow)
