"""Priority spill-over, locality weights, zone-aware routing and panic, as Envoy computes them."""

from __future__ import annotations

from collections import Counter

import pytest

from meshlib.balancing._locality import build_picker
from meshlib.balancing._priority import LevelCounts, priority_loads
from meshlib.balancing._zone_aware import ZoneCounts, plan_zone_routing
from meshlib.balancing.picker import Picker
from meshlib.balancing.policy import get_policy
from meshlib.errors import NoHealthyEndpointError
from meshlib.xds_client.resources import (
    CommonLbConfig,
    Endpoint,
    HealthStatus,
    Locality,
    LocalityEndpoints,
    ZoneAwareLbConfig,
)
from tests.balancing.builders import eds, ep, loc, picker
from tests.balancing.tolerance import assert_binomial

DOWN = HealthStatus.UNHEALTHY
N = 20_000


def hosts(first_port: int, healthy: int, down: int = 0, degraded: int = 0) -> list[Endpoint]:
    ports = iter(range(first_port, first_port + healthy + down + degraded))
    return (
        [ep(next(ports)) for _ in range(healthy)]
        + [ep(next(ports), DOWN) for _ in range(down)]
        + [ep(next(ports), HealthStatus.DEGRADED) for _ in range(degraded)]
    )


@pytest.mark.parametrize(
    ("p0_healthy", "expected"),
    [(100, (100, 0)), (72, (100, 0)), (71, (99, 1)), (50, (70, 30)), (25, (35, 65)), (0, (0, 100))],
)
def test_priority_load_follows_envoy_table(p0_healthy: int, expected: tuple[int, int]) -> None:
    loads = priority_loads([LevelCounts(100, p0_healthy), LevelCounts(100, 100)], 140, 0)
    assert loads.healthy == expected
    assert loads.degraded == (0, 0)


def test_three_priorities_and_normalization() -> None:
    three = priority_loads([LevelCounts(10, 2), LevelCounts(10, 2), LevelCounts(10, 10)], 140, 0)
    assert three.healthy == (28, 28, 44)
    # Total availability 56 < 100: each priority's share is scaled up to fill 100.
    short = priority_loads([LevelCounts(10, 2), LevelCounts(10, 2)], 140, 0)
    assert short.healthy == (50, 50)


def test_degraded_hosts_take_what_healthy_hosts_cannot() -> None:
    loads = priority_loads([LevelCounts(10, 5), LevelCounts(10, 0, degraded=10)], 140, 0)
    assert loads.healthy == (70, 0)
    assert loads.degraded == (0, 30)


def test_panic_per_priority_and_in_total() -> None:
    loads = priority_loads([LevelCounts(10, 3), LevelCounts(10, 10)], 140, 50)
    assert loads.healthy == (42, 58)
    assert loads.panic == (True, False)
    total = priority_loads([LevelCounts(4, 1), LevelCounts(6, 1)], 140, 50)
    assert total.panic == (True, True)
    assert total.healthy == (40, 60)  # by host count


def test_spill_over_is_proportional_through_the_picker() -> None:
    p = picker(loc("a", hosts(1, 5, down=5)), loc("b", hosts(100, 4), priority=1))
    got = Counter(p.pick().port >= 100 for _ in range(N))
    assert_binomial(got[False], N, 0.70, "priority 0 share")
    assert all(p.pick().health is HealthStatus.HEALTHY for _ in range(200))


def test_degraded_priority_gets_the_rest() -> None:
    p = picker(loc("a", hosts(1, 5, down=5)), loc("b", hosts(100, 0, degraded=4), priority=1))
    got = Counter(p.pick().port >= 100 for _ in range(N))
    assert_binomial(got[True], N, 0.30, "degraded share")


def test_panic_spreads_over_every_endpoint_of_the_priority() -> None:
    p = picker(loc("a", hosts(1, 1, down=3)))  # 25 % healthy * 1.4 = 35 % < 50 %: panic
    got = Counter(p.pick().port for _ in range(400))
    assert got == {1: 100, 2: 100, 3: 100, 4: 100}
    no_panic = picker(loc("a", hosts(1, 1, down=3)), common=CommonLbConfig(0))
    assert {no_panic.pick().port for _ in range(20)} == {1}


def test_wholly_unhealthy_cluster_fails_even_with_panic() -> None:
    p = picker(loc("a", hosts(1, 0, down=3)))
    with pytest.raises(NoHealthyEndpointError, match="no usable endpoint"):
        p.pick()


def test_locality_weight_is_scaled_by_its_health() -> None:
    # a: 1 of 4 healthy -> min(1, 1.4 * 0.25) = 0.35 of its weight; b: all healthy.
    p = picker(loc("a", hosts(1, 1, down=3), weight=1), loc("b", hosts(100, 4), weight=1))
    got = Counter(p.pick().port < 100 for _ in range(2700))
    assert got[True] == 700  # 0.35 : 1 = 7 : 20, exact per cycle


def _zones(local_healthy: int) -> tuple[LocalityEndpoints, ...]:
    return (
        loc("z1", hosts(1, local_healthy, down=3 - local_healthy)),
        loc("z2", hosts(100, 3)),
        loc("z3", hosts(200, 3)),
    )


def zone_picker(local_healthy: int, **config: object) -> Picker:
    common = CommonLbConfig(zone_aware=ZoneAwareLbConfig(**config))  # type: ignore[arg-type]
    return build_picker(
        "c",
        eds(*_zones(local_healthy)),
        get_policy("round_robin"),
        common=common,
        local_locality=Locality("r", "z1"),
    )


def zone_of(port: int) -> str:
    return "z1" if port < 100 else "z2" if port < 200 else "z3"


def test_zone_aware_keeps_traffic_local_when_the_zone_can_take_it() -> None:
    p = zone_picker(3)
    assert {zone_of(p.pick().port) for _ in range(300)} == {"z1"}


def test_zone_aware_spills_residual_in_envoy_proportions() -> None:
    plan = plan_zone_routing(
        [
            ZoneCounts(Locality("r", "z1"), 3, 1),
            ZoneCounts(Locality("r", "z2"), 3, 3),
            ZoneCounts(Locality("r", "z3"), 3, 3),
        ],
        Locality("r", "z1"),
        ZoneAwareLbConfig(),
    )
    assert plan is not None and not plan.direct
    # upstream shares 1428/4285/4285, local shares 3333 each: route 1428/3333 locally.
    assert plan.local_percent_to_route == 1428 * 10000 // 3333
    assert plan.residual == (0, 952, 1904)
    p = zone_picker(1)
    got = Counter(zone_of(p.pick().port) for _ in range(N))
    local = plan.local_percent_to_route / 10000
    assert_binomial(got["z1"], N, local, "local zone")
    assert_binomial(got["z2"], N, (1 - local) / 2, "zone 2")


def test_zone_aware_needs_min_cluster_size() -> None:
    p = zone_picker(3, min_cluster_size=10)  # 9 healthy < 10: no zone preference
    got = Counter(zone_of(p.pick().port) for _ in range(900))
    assert got == {"z1": 300, "z2": 300, "z3": 300}


def test_zone_aware_fail_traffic_on_panic() -> None:
    common = CommonLbConfig(zone_aware=ZoneAwareLbConfig(fail_traffic_on_panic=True))
    p = build_picker(
        "c", eds(loc("z1", hosts(1, 1, down=5))), get_policy("round_robin"), common=common
    )
    with pytest.raises(NoHealthyEndpointError, match="panic"):
        p.pick()
