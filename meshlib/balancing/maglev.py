"""``maglev``: Envoy's Maglev table (weighted), looked up in O(1).

Hosts are sorted by address (``ip:port``); each gets ``offset =
xxHash64(address, seed 0) % M`` and ``skip = xxHash64(address, seed 1) % (M -
1) + 1`` and claims slots along ``(offset + skip * next) % M``. Weights: in
round ``r`` (from 1) a host takes a slot unless ``r * w < target``, its
target growing by the largest weight each time it takes one — so a host of
weight max/3 claims every third round. Picking: ``table[hash % M]``; a retry
(``attempt`` k) first flips the hash with ``~0 - k + 1``, as Envoy does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import xxhash

from meshlib.balancing.hosts import BuildContext, HostPicker, normalized_weights
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


def build_table(weighted: Sequence[tuple[Endpoint, float]], size: int) -> list[Endpoint]:
    """The Maglev lookup table of ``size`` slots (a prime)."""
    hosts = sorted(((e.authority, e, w) for e, w in weighted), key=lambda t: t[0])
    keys = [a.encode() for a, _, _ in hosts]
    # Each host walks its permutation offset, offset + skip, ... (mod size); ``positions``
    # holds the next slot to try, i.e. (offset + skip * next) % size in Envoy's terms.
    positions = [xxhash.xxh64_intdigest(k, 0) % size for k in keys]
    skips = [xxhash.xxh64_intdigest(k, 1) % (size - 1) + 1 for k in keys]
    weights = [w for _, _, w in hosts]
    max_weight = max(weights)
    targets = [0.0] * len(hosts)
    slots = [-1] * size
    filled = 0
    iteration = 1
    unweighted = all(w == max_weight for w in weights)
    count = len(hosts)
    while filled < size:
        for i in range(count):
            if not unweighted:
                if iteration * weights[i] < targets[i]:
                    continue
                targets[i] += max_weight
            c = positions[i]
            skip = skips[i]
            while slots[c] >= 0:
                c += skip
                if c >= size:
                    c -= size
            slots[c] = i
            c += skip
            positions[i] = c - size if c >= size else c
            filled += 1
            if filled == size:
                break
        iteration += 1
    return [hosts[i][1] for i in slots]


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
