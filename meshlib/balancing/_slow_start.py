"""Envoy's slow start: a new endpoint's weight ramps up over a window.

factor = max(min_weight_percent / 100, (age / window) ** (1 / aggression)) while
the endpoint is younger than the window (age from when meshlib first saw it in
EDS, at least 1 ms), else 1.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshlib.balancing._hosts import HostStats
from meshlib.xds_client.resources import SlowStartConfig


def slow_start_factor(config: SlowStartConfig, first_seen: float, now: float) -> float:
    window = config.window_s
    age = now - first_seen
    if window <= 0 or age >= window:
        return 1.0
    time_factor = max(0.001, age) / window
    aggression = config.aggression if config.aggression > 0 else 1.0
    ramp = time_factor if aggression == 1.0 else time_factor ** (1.0 / aggression)
    return max(ramp, config.min_weight_percent / 100.0)


def any_warming(config: SlowStartConfig | None, stats: Iterable[HostStats], now: float) -> bool:
    """Whether some host is still inside its slow-start window."""
    if config is None or config.window_s <= 0:
        return False
    return any(now - s.first_seen < config.window_s for s in stats)
