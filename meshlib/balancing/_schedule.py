"""A deterministic weighted rotation, read lock-free by many threads.

The order of one full cycle is fixed when the schedule is built: smooth
weighted round robin (nginx's algorithm, the interleaving EDF also gives) when
the cycle is short, otherwise a coprime stride over the cumulative weights (the
same exact proportions, spread out, O(log n) per pick). Picking only advances
an ``itertools.count`` (atomic under the GIL) and indexes the table, so the
schedule itself is immutable and can be swapped by reference. :attr:`take` is
the same rotation as one C-level call when the cycle is a table (an
``itertools.cycle``: a pick runs no Python code of its own).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: Longest cycle that is precomputed as a table (entries, after dividing by the gcd).
MAX_TABLE = 4096


def smooth_wrr_order(weights: Sequence[int]) -> list[int]:
    """Indexes of one smooth-WRR cycle: each index ``i`` appears ``weights[i]`` times."""
    total = sum(weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        best = 0
        for i, weight in enumerate(weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= total
        order.append(best)
    return order


def _coprime_stride(total: int) -> int:
    stride = max(1, int(total * 0.6180339887))
    while math.gcd(stride, total) != 1:
        stride -= 1
    return stride


class WeightedSchedule(Generic[T]):
    """Hands out ``items`` in proportion to ``weights`` (all > 0), exactly per cycle."""

    __slots__ = ("_counter", "_cumulative", "_items", "_stride", "_table", "_total", "take")

    def __init__(
        self, items: Sequence[T], weights: Sequence[int], *, start: int | None = None
    ) -> None:
        if not items or len(items) != len(weights):
            raise ValueError("a weighted schedule needs one positive weight per item")
        if any(w <= 0 for w in weights):
            raise ValueError(f"schedule weights must be positive, got {list(weights)}")
        divisor = math.gcd(*weights)
        reduced = [w // divisor for w in weights]
        self._items = tuple(items)
        self._total = sum(reduced)
        self._table: tuple[T, ...] = ()
        self._cumulative: list[int] = []
        self._stride = 1
        if all(w == 1 for w in reduced):
            self._table = self._items
        elif self._total <= MAX_TABLE:
            self._table = tuple(self._items[i] for i in smooth_wrr_order(reduced))
        else:
            self._cumulative = list(itertools.accumulate(reduced))
            self._stride = _coprime_stride(self._total)
        first = random.randrange(self._total) if start is None else start
        self._counter = itertools.count(first)
        #: The next item, as :meth:`next` but with its own position (use one or the
        #: other): the table's cycle from the same start, or :meth:`next` itself.
        self.take: Callable[[], T] = self.next
        if self._table:
            start_at = first % self._total
            rotated = self._table[start_at:] + self._table[:start_at]
            self.take = itertools.cycle(rotated).__next__

    @property
    def cycle_length(self) -> int:
        """Picks per full cycle (the reduced weights' sum)."""
        return self._total

    def next(self) -> T:
        n = next(self._counter)
        if self._table:
            return self._table[n % self._total]
        slot = (n * self._stride) % self._total
        return self._items[bisect.bisect_right(self._cumulative, slot)]
