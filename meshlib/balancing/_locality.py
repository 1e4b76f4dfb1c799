"""From one EDS resource to a cluster picker: priority, then locality, then endpoint.

Health, as Envoy counts it: HEALTHY and UNKNOWN endpoints are healthy,
DEGRADED ones degraded (used only when healthy capacity runs short), and
UNHEALTHY, DRAINING and TIMEOUT ones — and endpoints ejected by outlier
detection — neither. Priority load, spill-over and panic come from
priority.py; inside a priority the cluster's policy picks, over localities
weighted by ``weight * min(1, overprovisioning * available / hosts)`` (or,
with zone-aware routing, by zone_aware.py's plan). Envoy routes to all hosts
when everything is down (panic); meshlib does so only while some endpoint is
usable by its EDS health (an all-ejected cluster panics; a cluster the
control plane marks wholly unhealthy fails, as gRPC does).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from meshlib.balancing._hosts import BuildContext, HostPicker
from meshlib.balancing._priority import LevelCounts, priority_loads
from meshlib.balancing._zone_aware import ZoneAwareSource, ZoneCounts, plan_zone_routing
from meshlib.balancing.picker import NO_PICK_CONTEXT, FailingPicker, PickContext, Picker
from meshlib.balancing.policy import LbPolicy
from meshlib.errors import NoHealthyEndpointError
from meshlib.xds_client.cluster_policies import DEFAULT_COMMON_LB_CONFIG
from meshlib.xds_client.resources import (
    CommonLbConfig,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    Locality,
    LocalityEndpoints,
)

_getrandbits = random.getrandbits
_random = random.random


@dataclass(frozen=True, slots=True)
class _Level:
    """One priority: its localities with all, healthy and degraded endpoints."""

    all: tuple[LocalityEndpoints, ...]
    healthy: tuple[LocalityEndpoints, ...]
    degraded: tuple[LocalityEndpoints, ...]

    def counts(self) -> LevelCounts:
        return LevelCounts(_count(self.all), _count(self.healthy), _count(self.degraded))


def _count(localities: Sequence[LocalityEndpoints]) -> int:
    return sum(len(loc.endpoints) for loc in localities)


def _trim(loc: LocalityEndpoints, keep: Callable[[Endpoint], bool]) -> LocalityEndpoints | None:
    kept = tuple(e for e in loc.endpoints if keep(e))
    if not kept:
        return None
    return loc if len(kept) == len(loc.endpoints) else replace(loc, endpoints=kept)


def _levels(resource: EndpointsResource, ejected: frozenset[str]) -> list[_Level]:
    by_priority: dict[int, list[LocalityEndpoints]] = {}
    for loc in resource.localities:
        if loc.weight > 0 and loc.endpoints:
            by_priority.setdefault(loc.priority, []).append(loc)
    levels = []
    for priority in sorted(by_priority):
        localities = by_priority[priority]

        def healthy(e: Endpoint) -> bool:
            return e.health.usable and not (ejected and e.authority in ejected)

        def degraded(e: Endpoint) -> bool:
            return e.health is HealthStatus.DEGRADED and not (ejected and e.authority in ejected)

        levels.append(
            _Level(
                tuple(localities),
                tuple(t for loc in localities if (t := _trim(loc, healthy)) is not None),
                tuple(t for loc in localities if (t := _trim(loc, degraded)) is not None),
            )
        )
    return levels


def _effective(
    available: Sequence[LocalityEndpoints], level: _Level, overprovisioning: int
) -> list[LocalityEndpoints]:
    """Localities re-weighted by their availability (Envoy's effective locality weight)."""
    by_locality = {loc.locality: len(loc.endpoints) for loc in level.all}
    result = []
    for loc in available:
        total = by_locality.get(loc.locality, len(loc.endpoints))
        ratio = min(1.0, overprovisioning / 100.0 * len(loc.endpoints) / total)
        result.append(replace(loc, weight=max(1, round(loc.weight * 1000 * ratio))))
    return result


class FailingSource:
    """A host set that must not take traffic (``fail_traffic_on_panic``)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        raise NoHealthyEndpointError(self.reason)


class ClusterPicker:
    """Priority (by Envoy's load table) → host set → the policy's pick."""

    __slots__ = ("_fallback", "_hash_based", "_single", "_table", "plain")

    def __init__(
        self, table: Sequence[HostPicker], hash_based: bool, fallback: Sequence[Endpoint]
    ) -> None:
        self._table = tuple(table)  # 100 slots: request draw % 100 → host set
        first = self._table[0]
        self._single = first if all(s is first for s in self._table) else None
        self._hash_based = hash_based
        self._fallback = tuple(fallback)
        #: ``pick()`` with no context in one call when one host set answers it alone
        #: (its ``plain``: round robin's rotation); None otherwise.
        self.plain: Callable[[], Endpoint] | None = None
        if self._single is not None and not hash_based:
            self.plain = getattr(self._single, "plain", None)

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint:
        h = ctx.request_hash
        if self._hash_based and h is None:
            h = _getrandbits(64)
        source = self._single
        if source is None:
            draw = h if self._hash_based and h is not None else _getrandbits(64)
            source = self._table[draw % 100]
        endpoint = source.choose(h, 0)
        if ctx.excluded and endpoint.authority in ctx.excluded:
            return self._avoid(ctx, h, endpoint)
        return endpoint

    def _avoid(self, ctx: PickContext, h: int | None, first: Endpoint) -> Endpoint:
        excluded = ctx.excluded
        for attempt in range(1, ctx.host_selection_retry_max_attempts + 1):
            source = self._single
            if source is None:
                draw = h if self._hash_based and h is not None else _getrandbits(64)
                source = self._table[draw % 100]
            endpoint = source.choose(h, attempt)
            if endpoint.authority not in excluded:
                return endpoint
        fallback = self._fallback
        count = len(fallback)
        start = int(_random() * count) if count else 0
        for k in range(count):
            endpoint = fallback[(start + k) % count]
            if endpoint.authority not in excluded:
                return endpoint
        return first


def build_picker(
    cluster: str,
    resource: EndpointsResource,
    policy: LbPolicy,
    *,
    ctx: BuildContext | None = None,
    common: CommonLbConfig = DEFAULT_COMMON_LB_CONFIG,
    local_locality: Locality | None = None,
    ejected: frozenset[str] = frozenset(),
) -> Picker:
    """A picker for ``cluster``; one that always fails (saying why) when nothing is usable.

    Raises ValueError when the policy refuses its config.
    """
    build_ctx = ctx if ctx is not None else BuildContext(cluster)
    levels = _levels(resource, ejected)
    total = len(resource.all_endpoints())
    if not any(
        e.health.usable or e.health is HealthStatus.DEGRADED
        for lv in levels
        for loc in lv.all
        for e in loc.endpoints
    ):
        return FailingPicker(
            f"cluster {cluster!r} has no usable endpoint ({total} endpoint(s) in EDS "
            f"{resource.cluster_name!r}, none HEALTHY, UNKNOWN or DEGRADED)"
        )
    overprovisioning = resource.overprovisioning_factor
    loads = priority_loads(
        [lv.counts() for lv in levels], overprovisioning, common.healthy_panic_threshold_percent
    )
    sources = _Sources(cluster, policy, build_ctx, common, local_locality, overprovisioning)
    table: list[HostPicker] = []
    fallback: list[Endpoint] = []
    for index, level in enumerate(levels):
        for mode, load in (("healthy", loads.healthy[index]), ("degraded", loads.degraded[index])):
            if load <= 0:
                continue
            hosts = level.all if loads.panic[index] else getattr(level, mode)
            if not hosts:
                return FailingPicker(
                    f"cluster {cluster!r} has no usable endpoint: every endpoint is "
                    f"unhealthy or ejected and panic mode is disabled ({total} in EDS)"
                )
            source = sources.build(index, level, mode, loads.panic[index])
            table.extend([source] * load)
            for loc in hosts:
                fallback.extend(loc.endpoints)  # repeats are harmless: only scanned
    return ClusterPicker(table, policy.hash_based, fallback)


class _Sources:
    """Builds the host set picker of one (priority, availability)."""

    def __init__(
        self,
        cluster: str,
        policy: LbPolicy,
        ctx: BuildContext,
        common: CommonLbConfig,
        local_locality: Locality | None,
        overprovisioning: int,
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.ctx = ctx
        self.common = common
        self.local = local_locality
        self.overprovisioning = overprovisioning
        #: Envoy weighs localities only with locality_weighted_lb_config; meshlib also by
        #: default (as gRPC does) unless zone-aware routing is configured.
        self.weigh_localities = common.locality_weighted or common.zone_aware is None

    def build(self, index: int, level: _Level, mode: str, panic: bool) -> HostPicker:
        zone_aware = self.common.zone_aware
        if panic:
            if zone_aware is not None and zone_aware.fail_traffic_on_panic:
                return FailingSource(
                    f"cluster {self.cluster!r}: priority {index} is in panic and "
                    f"fail_traffic_on_panic is set"
                )
            return self._policy_pick(level.all, level)
        available = level.healthy if mode == "healthy" else level.degraded
        if (
            index == 0
            and mode == "healthy"
            and zone_aware is not None
            and not self.common.locality_weighted
            and not self.policy.hash_based
        ):
            zones = [
                ZoneCounts(loc.locality, len(loc.endpoints), _healthy_in(level, loc.locality))
                for loc in level.all
            ]
            plan = plan_zone_routing(zones, self.local, zone_aware)
            if plan is not None:
                pickers = [self._flat(_healthy_of(level, loc.locality)) for loc in level.all]
                return ZoneAwareSource(plan, pickers, self._flat(available))
        return self._policy_pick(available, level)

    def _policy_pick(self, available: Sequence[LocalityEndpoints], level: _Level) -> HostPicker:
        if self.policy.hash_based:
            return self.policy.build(available, self.ctx)
        if not self.weigh_localities:
            return self._flat(available)
        return self.policy.build(_effective(available, level, self.overprovisioning), self.ctx)

    def _flat(self, localities: Sequence[LocalityEndpoints]) -> HostPicker:
        endpoints = tuple(e for loc in localities for e in loc.endpoints)
        if not endpoints:
            return FailingSource(f"cluster {self.cluster!r}: locality has no healthy endpoint")
        return self.policy.build([LocalityEndpoints(Locality(), 1, 0, endpoints)], self.ctx)


def _healthy_of(level: _Level, locality: Locality) -> list[LocalityEndpoints]:
    return [loc for loc in level.healthy if loc.locality == locality]


def _healthy_in(level: _Level, locality: Locality) -> int:
    return _count(_healthy_of(level, locality))
