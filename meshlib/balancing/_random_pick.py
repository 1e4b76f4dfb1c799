"""``random``: a random host, in proportion to endpoint weight.

Localities are chosen by weight first (exact rotation, as the other
non-hash policies); inside one, equal weights draw uniformly in O(1) and
unequal weights bisect the cumulative weights (O(log n)).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

from meshlib.balancing._hosts import BuildContext, HostPicker
from meshlib.balancing.policy import per_locality
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints

_random = random.random


class UniformPicker:
    __slots__ = ("_endpoints", "_n")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._n = len(self._endpoints)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        return self._endpoints[int(_random() * self._n)]


class WeightedRandomPicker:
    __slots__ = ("_cumulative", "_endpoints", "_total")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._cumulative = list(itertools.accumulate(max(1, e.weight) for e in endpoints))
        self._total = self._cumulative[-1]

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        draw = int(_random() * self._total)
        return self._endpoints[bisect.bisect_right(self._cumulative, draw)]


def _build_one(endpoints: Sequence[Endpoint]) -> HostPicker:
    if len({e.weight for e in endpoints}) == 1:
        return UniformPicker(endpoints)
    return WeightedRandomPicker(endpoints)


class RandomPolicy:
    name = "random"
    hash_based = False

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        return per_locality(localities, _build_one)


POLICY = RandomPolicy()
