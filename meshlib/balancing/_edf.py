"""Earliest-deadline-first over weights computed at pick time (Envoy's EDF).

Each host has a deadline; a pick takes the earliest and re-inserts the host at
``deadline + 1 / weight`` with its weight as of now, so weights that move
(active requests, slow start) take effect at once. O(log n) per pick under a
small lock (the heap is the only mutable state).
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections.abc import Callable, Sequence

from meshlib.balancing._hosts import Clock
from meshlib.xds_client.resources import Endpoint

#: weight(index, now) > 0
WeightFn = Callable[[int, float], float]


class EdfPicker:
    __slots__ = ("_clock", "_endpoints", "_heap", "_lock", "_seq", "_weight")

    def __init__(self, endpoints: Sequence[Endpoint], weight: WeightFn, clock: Clock) -> None:
        self._endpoints = tuple(endpoints)
        self._weight = weight
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        order = list(range(len(self._endpoints)))
        random.shuffle(order)  # ties: no fixed first host across processes
        self._seq = itertools.count(len(order))
        self._heap = [(1.0 / max(weight(i, now), 1e-9), rank, i) for rank, i in enumerate(order)]
        heapq.heapify(self._heap)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        now = self._clock()
        with self._lock:
            deadline, _, index = self._heap[0]
            weight = max(self._weight(index, now), 1e-9)
            heapq.heapreplace(self._heap, (deadline + 1.0 / weight, next(self._seq), index))
        return self._endpoints[index]
