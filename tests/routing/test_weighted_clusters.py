"""Weighted clusters: exact proportions, checked statistically with seeded draws.

Tolerances come from the binomial distribution: with n draws and share p the
count has standard deviation sqrt(n p (1-p)); we allow 5 of them (a false
failure chance under 1e-6 per check) and also check the sampler itself
partitions [0, total) exactly.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from meshlib.routing import _actions as actions
from meshlib.routing._route_table import RouteTable
from meshlib.xds_client.resources import (
    ClusterWeight,
    PathMatchKind,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)


def weighted(*weights: tuple[str, int], total: int | None = None) -> RouteTable:
    action = RouteAction(
        weighted_clusters=tuple(ClusterWeight(n, w) for n, w in weights), total_weight=total
    )
    route = Route("w", RouteMatch(PathMatchKind.PREFIX, "/"), action)
    return RouteTable(RouteConfigResource("rc", (VirtualHost("vh", ("*",), (route,)),)))


def draw(t: RouteTable, n: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    monkeypatch.setattr(actions, "_randrange", random.Random(seed).randrange)
    return Counter(t.match("h", "/", {}).cluster for _ in range(n))


def within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_percent_is_one_percent(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 50_000
    seen = draw(weighted(("canary", 1), ("stable", 99)), n, seed, monkeypatch)
    assert within(seen["canary"], n, 0.01), seen
    assert within(seen["stable"], n, 0.99), seen


def test_three_way_split(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 30_000
    seen = draw(weighted(("a", 10), ("b", 30), ("c", 60), total=100), n, 5, monkeypatch)
    for name, p in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert within(seen[name], n, p), (name, seen)


def test_every_draw_maps_to_its_cumulative_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    t = weighted(("a", 1), ("zero", 0), ("b", 99))
    picks = []
    for value in range(100):
        monkeypatch.setattr(actions, "_randrange", lambda total, v=value: v)
        picks.append(t.match("h", "/", {}).cluster)
    assert picks == ["a"] + ["b"] * 99  # [0,1) -> a, [1,100) -> b; weight 0 never drawn
