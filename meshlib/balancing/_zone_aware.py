"""Envoy's zone-aware routing: prefer the caller's own locality, spill the rest.

Envoy compares two distributions over the localities of priority 0: the
*upstream* share of healthy hosts per locality, and the *local* share of the
caller's own cluster per locality. meshlib has no local cluster (Envoy's
``local_cluster_name``), so the local share is the upstream cluster's share
of ALL its hosts per locality — callers are assumed to be deployed where the
service is (a symmetric mesh). With every host healthy the two shares match
and all traffic stays local; when the local locality loses hosts, Envoy's
rule applies: route ``upstream_local / local_local`` of requests locally and
send the rest to other localities in proportion to their residual capacity
(``upstream - local`` where positive). Shares are in units of 1/10000.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

from meshlib.balancing._hosts import HostPicker
from meshlib.xds_client.resources import Endpoint, Locality, ZoneAwareLbConfig

_random = random.random
_randrange = random.randrange


@dataclass(frozen=True, slots=True)
class ZoneCounts:
    locality: Locality
    hosts: int
    healthy: int


@dataclass(frozen=True, slots=True)
class ZonePlan:
    """How to route priority-0 traffic; indexes are into the localities given."""

    local: int
    #: All traffic local (the local locality has enough capacity).
    direct: bool
    #: Out of 10000: requests routed locally when not direct.
    local_percent_to_route: int
    #: Cumulative residual capacity per locality (the local one adds 0).
    residual: tuple[int, ...]
    routing_enabled_percent: float


def plan_zone_routing(
    zones: Sequence[ZoneCounts],
    local: Locality | None,
    config: ZoneAwareLbConfig,
) -> ZonePlan | None:
    """The zone plan, or None when Envoy would not route by zone (and why not is
    one of: no local locality, fewer than 2 localities, no healthy local host,
    fewer healthy hosts than ``min_cluster_size``)."""
    if local is None or len(zones) < 2:
        return None
    index = next((i for i, z in enumerate(zones) if z.locality == local), None)
    if index is None or zones[index].healthy == 0:
        return None
    healthy_total = sum(z.healthy for z in zones)
    host_total = sum(z.hosts for z in zones)
    if healthy_total < config.min_cluster_size:
        return None
    upstream = [10000 * z.healthy // healthy_total for z in zones]
    local_share = [10000 * z.hosts // host_total for z in zones]
    enabled = config.routing_enabled_percent
    if upstream[index] >= local_share[index]:
        return ZonePlan(index, True, 10000, tuple([0] * len(zones)), enabled)
    to_route = upstream[index] * 10000 // local_share[index]
    residual = []
    running = 0
    for i in range(len(zones)):
        if i != index and upstream[i] > local_share[i]:
            running += upstream[i] - local_share[i]
        residual.append(running)
    return ZonePlan(index, False, to_route, tuple(residual), enabled)


class ZoneAwareSource:
    """Priority 0's healthy hosts, routed by a :class:`ZonePlan`."""

    __slots__ = ("_direct", "_flat", "_local", "_pickers", "_plan", "_threshold")

    def __init__(self, plan: ZonePlan, pickers: Sequence[HostPicker], flat: HostPicker) -> None:
        self._plan = plan
        self._pickers = tuple(pickers)
        self._local = self._pickers[plan.local]
        self._direct = plan.direct
        self._flat = flat
        self._threshold = plan.residual[-1]

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        plan = self._plan
        if plan.routing_enabled_percent < 100 and _random() * 100 >= plan.routing_enabled_percent:
            return self._flat.choose(h, attempt)
        if self._direct or _randrange(10000) < plan.local_percent_to_route:
            return self._local.choose(h, attempt)
        if self._threshold == 0:  # rounding left no residual anywhere: any healthy host
            return self._flat.choose(h, attempt)
        sampled = _randrange(self._threshold)
        return self._pickers[bisect.bisect_right(plan.residual, sampled)].choose(h, attempt)
