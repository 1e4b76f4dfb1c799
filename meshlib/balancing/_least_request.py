"""``least_request``: Envoy's least request (gRFC A48 for gRPC).

Equal weights: power of ``choice_count`` choices — sample that many hosts at
random and take the one with the fewest active requests (the first sampled
wins ties). Unequal weights (or a host in slow start): EDF over
``weight / (active + 1) ** active_request_bias`` (times the slow-start
factor), computed when the host is re-scheduled, as Envoy does. Active counts
come from the cluster runtime, so they survive picker rebuilds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshlib.balancing._edf import EdfPicker, WeightFn
from meshlib.balancing._hosts import BuildContext, HostPicker, HostStats
from meshlib.balancing._slow_start import any_warming, slow_start_factor
from meshlib.balancing.policy import per_locality
from meshlib.xds_client.resources import Endpoint, LeastRequestConfig, LocalityEndpoints

_random = random.random


class ChoicesPicker:
    """Power of ``choice_count`` choices by active requests."""

    __slots__ = ("_choices", "_endpoints", "_n", "_stats")

    def __init__(
        self, endpoints: Sequence[Endpoint], stats: Sequence[HostStats], choice_count: int
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._stats = tuple(stats)
        self._n = len(self._endpoints)
        self._choices = range(max(1, choice_count) - 1)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        n = self._n
        stats = self._stats
        best = int(_random() * n)
        best_active = stats[best].active
        for _ in self._choices:
            index = int(_random() * n)
            active = stats[index].active
            if active < best_active:
                best, best_active = index, active
        return self._endpoints[best]


class LeastRequest:
    name = "least_request"
    hash_based = False

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        config = ctx.config if isinstance(ctx.config, LeastRequestConfig) else LeastRequestConfig()
        if config.choice_count < 2:
            raise ValueError(f"least_request choice_count must be >= 2, got {config.choice_count}")
        if config.active_request_bias < 0:
            raise ValueError(
                f"least_request active_request_bias must be >= 0, got {config.active_request_bias}"
            )

        def build_one(endpoints: Sequence[Endpoint]) -> HostPicker:
            stats = [ctx.stats(e) for e in endpoints]
            warming = any_warming(config.slow_start, stats, ctx.clock())
            weights = [max(1, e.weight) for e in endpoints]
            if not warming and len(set(weights)) == 1:
                return ChoicesPicker(endpoints, stats, config.choice_count)
            return EdfPicker(endpoints, _weight_fn(weights, stats, config), ctx.clock)

        return per_locality(localities, build_one)


def _weight_fn(
    weights: Sequence[int], stats: Sequence[HostStats], config: LeastRequestConfig
) -> WeightFn:
    bias = config.active_request_bias
    slow_start = config.slow_start

    def weight(i: int, now: float) -> float:
        active = stats[i].active + 1
        if bias == 1.0:
            value = weights[i] / active
        elif bias == 0.0:
            value = float(weights[i])
        else:
            value = weights[i] / active**bias
        if slow_start is not None:
            value *= slow_start_factor(slow_start, stats[i].first_seen, now)
        return value

    return weight


POLICY = LeastRequest()
