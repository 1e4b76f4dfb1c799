"""Balancers: exact proportions over a cycle, priority failover, endpoint weights."""

from __future__ import annotations

from collections import Counter

import pytest

from meshlib.balancing._locality import build_picker
from meshlib.balancing._schedule import MAX_TABLE, WeightedSchedule, smooth_wrr_order
from meshlib.balancing.picker import Picker
from meshlib.balancing.policy import UnknownPolicyError, available_policies, get_policy
from meshlib.errors import NoHealthyEndpointError
from meshlib.xds_client.resources import (
    Endpoint,
    EndpointsResource,
    HealthStatus,
    Locality,
    LocalityEndpoints,
)

HEALTHY = HealthStatus.HEALTHY


def locality(
    zone: str, ports: list[int], *, weight: int = 1, priority: int = 0, **overrides: HealthStatus
) -> LocalityEndpoints:
    endpoints = tuple(Endpoint("10.0.0.1", p, overrides.get(f"p{p}", HEALTHY)) for p in ports)
    return LocalityEndpoints(Locality("r", zone), weight, priority, endpoints)


def picker_for(*localities: LocalityEndpoints) -> Picker:
    return build_picker("c", EndpointsResource("c", localities), get_policy("round_robin"))


def ports(picker: Picker, n: int) -> Counter[int]:
    return Counter(picker.pick().port for _ in range(n))


def test_round_robin_is_exactly_even_over_a_cycle() -> None:
    picker = picker_for(locality("z1", [1, 2, 3]))
    sequence = [picker.pick().port for _ in range(9)]
    assert Counter(sequence) == {1: 3, 2: 3, 3: 3}
    assert sequence[:3] == sequence[3:6] == sequence[6:]  # a strict rotation


def test_locality_weights_are_exact_over_a_cycle() -> None:
    picker = picker_for(locality("a", [1, 2], weight=3), locality("b", [3], weight=1))
    counts = ports(picker, 400)
    assert counts[1] + counts[2] == 300
    assert counts[3] == 100
    assert counts[1] == counts[2] == 150


def test_endpoint_weights_are_respected_and_interleaved() -> None:
    endpoints = (Endpoint("10.0.0.1", 1, HEALTHY, weight=3), Endpoint("10.0.0.1", 2, HEALTHY))
    picker = picker_for(LocalityEndpoints(Locality(), 1, 0, endpoints))
    cycle = [picker.pick().port for _ in range(4)]
    assert Counter(cycle) == {1: 3, 2: 1}
    assert Counter(picker.pick().port for _ in range(400)) == {1: 300, 2: 100}


def test_priority_failover_when_priority_zero_has_no_usable_endpoint() -> None:
    down = locality("a", [1, 2], p1=HealthStatus.UNHEALTHY, p2=HealthStatus.DRAINING)
    backup = locality("b", [3], priority=1)
    assert set(ports(picker_for(down, backup), 10)) == {3}
    up = locality("a", [1, 2], p1=HealthStatus.UNKNOWN)
    assert set(ports(picker_for(up, backup), 10)) == {1, 2}


def test_unusable_endpoints_are_skipped_inside_a_locality() -> None:
    picker = picker_for(locality("a", [1, 2, 3], p2=HealthStatus.UNHEALTHY))
    assert ports(picker, 10) == {1: 5, 3: 5}


def test_nothing_usable_fails_with_a_clear_error() -> None:
    picker = picker_for(locality("a", [1], p1=HealthStatus.UNHEALTHY))
    with pytest.raises(NoHealthyEndpointError, match="cluster 'c' has no usable endpoint"):
        picker.pick()


def test_smooth_wrr_interleaves() -> None:
    assert smooth_wrr_order([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]


def test_long_cycles_use_the_stride_and_stay_exact() -> None:
    weights = [MAX_TABLE, MAX_TABLE + 1, 3]
    schedule = WeightedSchedule(["a", "b", "c"], weights, start=0)
    total = schedule.cycle_length
    assert total == sum(weights)
    counts = Counter(schedule.next() for _ in range(total))
    assert counts == {"a": weights[0], "b": weights[1], "c": 3}


def test_schedule_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="positive"):
        WeightedSchedule(["a"], [0])


def test_policy_registry_names_known_policies() -> None:
    assert "round_robin" in available_policies()
    with pytest.raises(UnknownPolicyError, match=r"'maglevv'.*round_robin"):
        get_policy("maglevv")
