"""``round_robin``: weighted rotation over localities, then over their endpoints.

Localities take turns in proportion to their locality weight; inside one,
endpoints take turns in proportion to their endpoint weight (all 1: plain
round robin). Both rotations are exact over a cycle (see schedule.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.balancing.picker import NO_PICK_CONTEXT, PickContext, Picker
from meshlib.balancing.schedule import WeightedSchedule
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints


def endpoint_schedule(endpoints: Sequence[Endpoint]) -> WeightedSchedule[Endpoint]:
    return WeightedSchedule(endpoints, [max(1, e.weight) for e in endpoints])


class SingleLocalityPicker:
    """Round robin inside one locality (the common case: skip the outer level)."""

    __slots__ = ("_next",)

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._next = endpoint_schedule(endpoints).next

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint:
        return self._next()


class LocalityWeightedPicker:
    """Pick a locality by weight, then an endpoint inside it."""

    __slots__ = ("_next_locality",)

    def __init__(self, localities: Sequence[LocalityEndpoints]) -> None:
        inner = [endpoint_schedule(loc.endpoints).next for loc in localities]
        self._next_locality = WeightedSchedule(inner, [loc.weight for loc in localities]).next

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint:
        return self._next_locality()()


class RoundRobin:
    name = "round_robin"

    def build(self, cluster: str, localities: Sequence[LocalityEndpoints]) -> Picker:
        if len(localities) == 1:
            return SingleLocalityPicker(localities[0].endpoints)
        return LocalityWeightedPicker(localities)


POLICY = RoundRobin()
