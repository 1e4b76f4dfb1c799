"""What policies build from: per-host runtime stats and the build context.

A :class:`HostStats` lives in the cluster runtime for as long as its endpoint
is in EDS, so active-request counts and slow-start clocks survive picker
rebuilds. A :class:`HostPicker` is one policy's choice over one set of hosts
(a priority, or one locality of it); the priority layer above it picks which
set to use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meshlib.xds_client.resources import Endpoint, LbConfig, LocalityEndpoints

Clock = Callable[[], float]


class HostStats:
    """Mutable runtime facts about one endpoint (by authority)."""

    __slots__ = ("active", "authority", "first_seen")

    def __init__(self, authority: str, first_seen: float) -> None:
        self.authority = authority
        #: Calls in flight (read lock-free by least_request; written under the runtime lock).
        self.active = 0
        #: Monotonic time the endpoint first appeared in EDS (slow start).
        self.first_seen = first_seen


class HostPicker(Protocol):
    """One policy's choice over a fixed set of hosts.

    ``h`` is the request hash (hash policies; None: they draw a random one);
    ``attempt`` > 0 asks for an alternative, as Envoy's host selection retries do.
    """

    def choose(self, h: int | None, attempt: int) -> Endpoint: ...


def _new_stats(endpoint: Endpoint) -> HostStats:
    return HostStats(endpoint.authority, time.monotonic())


@dataclass(frozen=True, slots=True)
class BuildContext:
    """Everything a policy may read while building a picker."""

    cluster: str
    config: LbConfig | None = None
    #: Runtime stats of an endpoint (the same object across rebuilds).
    stats: Callable[[Endpoint], HostStats] = _new_stats
    clock: Clock = time.monotonic
    #: Envoy's locality_weighted_lb_config: hash tables weigh localities too.
    locality_weighted: bool = False


def flatten(localities: Sequence[LocalityEndpoints]) -> list[Endpoint]:
    return [e for loc in localities for e in loc.endpoints]


def normalized_weights(
    localities: Sequence[LocalityEndpoints], locality_weighted: bool
) -> list[tuple[Endpoint, float]]:
    """Envoy's normalized host weights (summing to 1), in EDS order.

    Without locality weighting: endpoint weight over the sum of all weights.
    With it: locality share times the endpoint's share inside its locality.
    """
    if not locality_weighted:
        hosts = flatten(localities)
        total = sum(e.weight for e in hosts)
        return [(e, e.weight / total) for e in hosts]
    locality_total = sum(loc.weight for loc in localities if loc.endpoints)
    result: list[tuple[Endpoint, float]] = []
    for loc in localities:
        if not loc.endpoints:
            continue
        share = loc.weight / locality_total
        inner = sum(e.weight for e in loc.endpoints)
        result.extend((e, share * e.weight / inner) for e in loc.endpoints)
    return result
