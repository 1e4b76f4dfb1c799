"""The fast Maglev population builds the same table as the straightforward one.

``build_table`` steps along each host's permutation while the table is mostly
empty and solves for the next free slot near the end; the reference below
steps all the way, exactly as Envoy's population loop does (weighted rounds).
"""

from __future__ import annotations

import random

import pytest
import xxhash

from meshlib.balancing._maglev import build_table
from meshlib.xds_client.resources import Endpoint, HealthStatus


def reference_table(weighted: list[tuple[Endpoint, float]], size: int) -> list[str]:
    """Envoy's population, one probe at a time: round ``r`` skips a host while
    ``r * weight < target``; a host that takes a slot raises its target by the
    largest weight."""
    hosts = sorted(weighted, key=lambda hw: hw[0].authority)
    names = [e.authority for e, _ in hosts]
    offset = [xxhash.xxh64_intdigest(n.encode(), 0) % size for n in names]
    skip = [xxhash.xxh64_intdigest(n.encode(), 1) % (size - 1) + 1 for n in names]
    weights = [w for _, w in hosts]
    biggest = max(weights)
    target = [0.0] * len(hosts)
    following = [0] * len(hosts)
    table: list[str | None] = [None] * size
    filled = 0
    round_number = 1
    while filled < size:
        for i, name in enumerate(names):
            if filled == size:
                break
            if round_number * weights[i] < target[i]:
                continue
            target[i] += biggest
            while table[(offset[i] + skip[i] * following[i]) % size] is not None:
                following[i] += 1
            table[(offset[i] + skip[i] * following[i]) % size] = name
            following[i] += 1
            filled += 1
        round_number += 1
    return [n for n in table if n is not None]


def endpoints(count: int, rng: random.Random) -> list[Endpoint]:
    addresses = rng.sample(range(1 << 24), count)
    return [
        Endpoint(f"10.{a >> 16}.{(a >> 8) & 255}.{a & 255}", 8000, HealthStatus.HEALTHY)
        for a in addresses
    ]


@pytest.mark.parametrize(
    ("hosts", "size", "weighted"),
    [
        (1, 257, False),
        (3, 257, True),
        (7, 1009, False),
        (40, 1009, True),
        (300, 4099, False),
        (300, 4099, True),
        (400, 257, False),  # more hosts than slots: the last round stops part way
        (2000, 65537, True),
    ],
)
def test_table_matches_the_straightforward_population(
    hosts: int, size: int, weighted: bool
) -> None:
    rng = random.Random(hosts * 31 + size)
    eps = endpoints(hosts, rng)
    pairs = [(e, rng.choice([1, 2, 3, 7]) / 10 if weighted else 1 / hosts) for e in eps]
    table = build_table(pairs, size)
    assert len(table) == size
    assert [e.authority for e in table] == reference_table(pairs, size)


def test_ten_thousand_hosts_in_the_default_table() -> None:
    eps = endpoints(10_000, random.Random(7))
    pairs = [(e, 1e-4) for e in eps]
    assert [e.authority for e in build_table(pairs, 65537)] == reference_table(pairs, 65537)
