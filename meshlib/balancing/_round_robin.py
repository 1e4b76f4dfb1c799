"""``round_robin``: weighted rotation over localities, then over their endpoints.

Localities take turns in proportion to their (effective) locality weight;
inside one, endpoints take turns in proportion to their endpoint weight (all
1: plain round robin). Both rotations are exact over a cycle (schedule.py).
With slow start and a host still warming up, the endpoint level becomes EDF
over the ramped weights (as Envoy does), so the ramp follows the clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.balancing._edf import EdfPicker
from meshlib.balancing._hosts import BuildContext, HostPicker
from meshlib.balancing._schedule import WeightedSchedule
from meshlib.balancing._slow_start import any_warming, slow_start_factor
from meshlib.balancing.policy import per_locality
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints, RoundRobinConfig


class RoundRobinPicker:
    """Exact weighted rotation over a fixed host list."""

    __slots__ = ("plain",)

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        #: The next endpoint, with no context (no hash, nothing excluded): one call.
        self.plain = WeightedSchedule(endpoints, [max(1, e.weight) for e in endpoints]).take

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        return self.plain()


class RoundRobin:
    name = "round_robin"
    hash_based = False

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        config = ctx.config if isinstance(ctx.config, RoundRobinConfig) else RoundRobinConfig()
        slow_start = config.slow_start

        def build_one(endpoints: Sequence[Endpoint]) -> HostPicker:
            if slow_start is None:
                return RoundRobinPicker(endpoints)
            stats = [ctx.stats(e) for e in endpoints]
            if not any_warming(slow_start, stats, ctx.clock()):
                return RoundRobinPicker(endpoints)
            weights = [max(1, e.weight) for e in endpoints]

            def weight(i: int, now: float) -> float:
                return weights[i] * slow_start_factor(slow_start, stats[i].first_seen, now)

            return EdfPicker(endpoints, weight, ctx.clock)

        return per_locality(localities, build_one)


POLICY = RoundRobin()
