"""Envoy's priority load: how much traffic each priority level takes.

Per priority, health = min(100, overprovisioning_factor * healthy / hosts)
(integer percent; degraded likewise). Load goes to priorities in order, each
taking its share of ``health * 100 / normalized_total`` (normalized_total =
min(100, sum of health + degraded)) until 100 is spent; what healthy hosts
cannot take goes to degraded hosts the same way; rounding leftovers go to the
first available priority. A priority whose (healthy + degraded) percentage is
below the panic threshold is in panic: it spreads over all its hosts. When
every priority is in panic, load follows host counts instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LevelCounts:
    """Host counts of one priority level."""

    hosts: int
    healthy: int
    degraded: int = 0


@dataclass(frozen=True, slots=True)
class PriorityLoads:
    """Percent of traffic per priority, by availability, and which are in panic."""

    healthy: tuple[int, ...]
    degraded: tuple[int, ...]
    panic: tuple[bool, ...]


def level_health(level: LevelCounts, overprovisioning_factor: int) -> tuple[int, int]:
    """(healthy, degraded) availability of one level, each 0..100."""
    if level.hosts == 0:
        return 0, 0
    healthy = min(100, overprovisioning_factor * level.healthy // level.hosts)
    degraded = min(100, overprovisioning_factor * level.degraded // level.hosts)
    return healthy, degraded


def _distribute(
    availability: Sequence[int], total_load: int, normalized_total: int
) -> tuple[list[int], int | None, int]:
    loads = []
    first: int | None = None
    for i, value in enumerate(availability):
        if first is None and value > 0:
            first = i
        load = min(total_load, value * 100 // normalized_total)
        loads.append(load)
        total_load -= load
    return loads, first, total_load


def in_panic(level: LevelCounts, panic_threshold: float) -> bool:
    if level.hosts == 0:
        return panic_threshold > 0
    percent = 100.0 * level.healthy / level.hosts + 100.0 * level.degraded / level.hosts
    return percent < panic_threshold


def priority_loads(
    levels: Sequence[LevelCounts], overprovisioning_factor: int, panic_threshold: float
) -> PriorityLoads:
    """Envoy's per-priority healthy and degraded load (each list sums with the other to 100)."""
    count = len(levels)
    health = [level_health(level, overprovisioning_factor) for level in levels]
    normalized_total = min(100, sum(h + d for h, d in health))
    healthy_load = [0] * count
    degraded_load = [0] * count
    if normalized_total > 0:
        healthy_load, first_healthy, left = _distribute(
            [h for h, _ in health], 100, normalized_total
        )
        degraded_load, first_degraded, left = _distribute(
            [d for _, d in health], left, normalized_total
        )
        if left:
            if first_healthy is not None:
                healthy_load[first_healthy] += left
            elif first_degraded is not None:
                degraded_load[first_degraded] += left
    elif panic_threshold <= 0:
        healthy_load[0] = 100  # nothing available and panic disabled: P0 (it has no host)
        return PriorityLoads(tuple(healthy_load), tuple(degraded_load), (False,) * count)
    panic = [normalized_total == 0 or in_panic(level, panic_threshold) for level in levels]
    if all(panic):
        healthy_load = _load_in_total_panic(levels)
        degraded_load = [0] * count
    return PriorityLoads(tuple(healthy_load), tuple(degraded_load), tuple(panic))


def _load_in_total_panic(levels: Sequence[LevelCounts]) -> list[int]:
    total_hosts = sum(level.hosts for level in levels)
    loads = [0] * len(levels)
    if total_hosts == 0:
        loads[0] = 100
        return loads
    left = 100
    first: int | None = None
    for i, level in enumerate(levels):
        if first is None and level.hosts:
            first = i
        loads[i] = 100 * level.hosts // total_hosts
        left -= loads[i]
    assert first is not None
    loads[first] += left
    return loads
