"""``pick_first``: the first host of the list, in EDS order (or shuffled once).

As gRPC's pick_first: every request goes to the same endpoint while it stays
usable; when it leaves (unhealthy, ejected, removed) the next one in order
takes over. ``shuffle_address_list`` shuffles the list once per rebuild, so
clients spread over endpoints. Retries (``attempt`` > 0) walk the list.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshlib.balancing._hosts import BuildContext, HostPicker, flatten
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints, PickFirstConfig


class PickFirstPicker:
    __slots__ = ("_endpoints", "_n")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._n = len(self._endpoints)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        return self._endpoints[attempt % self._n]


class PickFirst:
    name = "pick_first"
    hash_based = False

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        config = ctx.config if isinstance(ctx.config, PickFirstConfig) else PickFirstConfig()
        endpoints = flatten(localities)
        if config.shuffle_address_list:
            random.shuffle(endpoints)
        return PickFirstPicker(endpoints)


POLICY = PickFirst()
