"""``maglev``: Envoy's Maglev table (weighted), looked up in O(1).

Hosts are sorted by address (``ip:port``); each gets ``offset =
xxHash64(address, seed 0) % M`` and ``skip = xxHash64(address, seed 1) % (M -
1) + 1`` and claims slots along ``(offset + skip * next) % M``. Weights: in
round ``r`` (from 1) a host takes a slot unless ``r * w < target``, its
target growing by the largest weight each time it takes one — so a host of
weight max/3 claims every third round. Picking: ``table[hash % M]``; a retry
(``attempt`` k) first flips the hash with ``~0 - k + 1``, as Envoy does.

Building is the costly part (10,000 hosts into 65,537 slots): stepping along a
permutation needs ``M / empty`` probes per slot, so the last few hundred slots
are found by solving for them instead (:func:`_solve_slot`); same table, a
fraction of the probes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import xxhash

from meshlib.balancing._hosts import BuildContext, HostPicker, normalized_weights
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints, MaglevConfig

_getrandbits = random.getrandbits
_MASK64 = (1 << 64) - 1


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


#: Below this many empty slots, a host finds its next slot by solving for it
#: (see :func:`_solve_slot`) instead of stepping along its permutation.
_SOLVE_BELOW = 256


def _solve_slot(empties: list[int], offset: int, inverse: int, skip: int, size: int) -> int:
    """The empty slot a host's permutation reaches first.

    Host slot ``j`` of the permutation is ``(offset + skip * j) % size``, so an
    empty slot ``e`` is its ``j = (e - offset) * skip⁻¹ % size``; every slot
    before the host's next one is already taken, so the smallest such ``j`` is
    exactly where stepping would stop. O(empty slots) instead of O(size / empty)."""
    j = min([(e - offset) * inverse % size for e in empties])
    return (offset + skip * j) % size


class _Population:
    """The state of one table build: who holds each slot, where each host goes
    next, and where the round-robin stands (round ``iteration``, host ``turn``)."""

    __slots__ = ("iteration", "positions", "remaining", "slots", "taken", "targets", "turn")

    def __init__(self, offsets: list[int], size: int) -> None:
        self.taken = bytearray(size)
        self.slots = [0] * size  # slot -> host index
        self.positions = offsets[:]  # the next slot each host tries
        self.targets = [0.0] * len(offsets)
        self.remaining = size
        self.iteration = 1
        self.turn = 0


def _step_until(pop: _Population, skips: list[int], weights: list[float] | None, stop: int) -> None:
    """Claim slots by stepping along the permutations until ``stop`` slots are
    left empty (the bulk of the table: few probes per slot while it is sparse)."""
    remaining = pop.remaining
    if remaining <= stop:
        return
    taken, slots, positions, targets = pop.taken, pop.slots, pop.positions, pop.targets
    size = len(taken)
    count = len(skips)
    max_weight = max(weights) if weights is not None else 0.0
    iteration = pop.iteration
    while True:
        for i in range(count):
            if weights is not None:
                if iteration * weights[i] < targets[i]:
                    continue
                targets[i] += max_weight
            skip = skips[i]
            c = positions[i]
            while taken[c]:
                c = (c + skip) % size
            taken[c] = 1
            slots[c] = i
            positions[i] = (c + skip) % size
            remaining -= 1
            if remaining == stop:
                pop.remaining = remaining
                pop.iteration, pop.turn = (
                    (iteration, i + 1) if i + 1 < count else (iteration + 1, 0)
                )
                return
        iteration += 1


def _solve_rest(
    pop: _Population, offsets: list[int], skips: list[int], weights: list[float] | None
) -> None:
    """Claim the last slots, each host solving for its next empty one."""
    taken, slots, positions, targets = pop.taken, pop.slots, pop.positions, pop.targets
    size = len(taken)
    count = len(skips)
    max_weight = max(weights) if weights is not None else 0.0
    empties = _empty_slots(taken)
    remaining = pop.remaining
    iteration = pop.iteration
    turn = pop.turn
    while remaining:
        for i in range(turn, count):
            if weights is not None:
                if iteration * weights[i] < targets[i]:
                    continue
                targets[i] += max_weight
            skip = skips[i]
            c = positions[i]
            if taken[c]:
                c = _solve_slot(empties, offsets[i], pow(skip, -1, size), skip, size)
            taken[c] = 1
            slots[c] = i
            positions[i] = (c + skip) % size
            empties.remove(c)
            remaining -= 1
            if not remaining:
                return
        turn = 0
        iteration += 1


def _fill(offsets: list[int], skips: list[int], weights: list[float], size: int) -> list[int]:
    """Slot → host index, by Envoy's round-robin population (weighted rounds;
    equal weights skip the weight test altogether, as every host takes a slot
    every round)."""
    max_weight = max(weights)
    weighted = None if all(w == max_weight for w in weights) else weights
    pop = _Population(offsets, size)
    _step_until(pop, skips, weighted, min(_SOLVE_BELOW, size))
    _solve_rest(pop, offsets, skips, weighted)
    return pop.slots


def _empty_slots(taken: bytearray) -> list[int]:
    found: list[int] = []
    k = taken.find(0)
    while k >= 0:
        found.append(k)
        k = taken.find(0, k + 1)
    return found


def build_table(weighted: Sequence[tuple[Endpoint, float]], size: int) -> list[Endpoint]:
    """The Maglev lookup table of ``size`` slots (a prime)."""
    if not weighted:
        raise ValueError("maglev: no hosts to build a lookup table from")
    names = [e.authority for e, _ in weighted]
    order = sorted(range(len(names)), key=names.__getitem__)  # stable: ties keep EDS order
    keys = [names[i].encode() for i in order]
    digest = xxhash.xxh64_intdigest
    offsets = [digest(k, 0) % size for k in keys]
    skip_range = size - 1
    skips = [digest(k, 1) % skip_range + 1 for k in keys]
    endpoints = [weighted[i][0] for i in order]
    slots = _fill(offsets, skips, [weighted[i][1] for i in order], size)
    return list(map(endpoints.__getitem__, slots))


class MaglevPicker:
    __slots__ = ("_size", "_table")

    def __init__(self, table: Sequence[Endpoint]) -> None:
        self._table = tuple(table)
        self._size = len(self._table)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        if h is None:
            h = _getrandbits(64)
        if attempt:
            h ^= (_MASK64 - attempt + 1) & _MASK64
        return self._table[h % self._size]


class Maglev:
    name = "maglev"
    hash_based = True

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        config = ctx.config if isinstance(ctx.config, MaglevConfig) else MaglevConfig()
        if not _is_prime(config.table_size):
            raise ValueError(f"maglev table_size must be a prime, got {config.table_size}")
        weighted = normalized_weights(localities, ctx.locality_weighted)
        return MaglevPicker(build_table(weighted, config.table_size))


POLICY = Maglev()
