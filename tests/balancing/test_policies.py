"""Each policy on its own: exact cycles where deterministic, binomial bounds where random."""

from __future__ import annotations

from collections import Counter

import pytest

from meshlib.balancing._hosts import BuildContext, HostStats
from meshlib.balancing._least_request import ChoicesPicker
from meshlib.balancing._locality import build_picker
from meshlib.balancing._slow_start import slow_start_factor
from meshlib.balancing.policy import get_policy
from meshlib.xds_client.resources import (
    HealthStatus,
    LeastRequestConfig,
    PickFirstConfig,
    RoundRobinConfig,
    SlowStartConfig,
)
from tests.balancing.builders import eds, ep, loc, picker
from tests.balancing.tolerance import assert_binomial

N = 20_000


def counts(p: object, n: int = N) -> Counter[int]:
    return Counter(p.pick().port for _ in range(n))  # type: ignore[attr-defined]


def test_round_robin_weighted_by_endpoint_weight_is_exact() -> None:
    p = picker(loc("a", [ep(1, weight=5), ep(2), ep(3)]))
    cycle = [p.pick().port for _ in range(7)]
    assert Counter(cycle) == {1: 5, 2: 1, 3: 1}
    assert Counter(p.pick().port for _ in range(700)) == {1: 500, 2: 100, 3: 100}


@pytest.mark.parametrize("policy", ["random", "least_request"])
def test_random_and_least_request_are_uniform_with_equal_weights(policy: str) -> None:
    got = counts(picker(loc("a", [ep(1), ep(2), ep(3), ep(4)]), policy=policy))
    for port in (1, 2, 3, 4):
        assert_binomial(got[port], N, 0.25, f"port {port}")


def test_random_follows_endpoint_weights() -> None:
    got = counts(
        picker(loc("a", [ep(1, weight=1), ep(2, weight=3), ep(3, weight=6)]), policy="random")
    )
    for port, p in ((1, 0.1), (2, 0.3), (3, 0.6)):
        assert_binomial(got[port], N, p, f"port {port}")


def test_least_request_prefers_the_idle_host() -> None:
    endpoints = [ep(1), ep(2)]
    stats = [HostStats(e.authority, 0.0) for e in endpoints]
    stats[0].active = 5
    chooser = ChoicesPicker(endpoints, stats, 2)
    got = Counter(chooser.choose(None, 0).port for _ in range(N))
    # Two independent draws: the busy host wins only when both draws are it (p = 1/4).
    assert_binomial(got[1], N, 0.25, "busy host")


def test_least_request_choice_count_sharpens_the_preference() -> None:
    endpoints = [ep(p) for p in range(1, 5)]
    stats = [HostStats(e.authority, 0.0) for e in endpoints]
    for s in stats[1:]:
        s.active = 3
    chooser = ChoicesPicker(endpoints, stats, 3)
    got = Counter(chooser.choose(None, 0).port for _ in range(N))
    # The idle host loses only when none of 3 draws hits it: p(win) = 1 - (3/4)^3.
    assert_binomial(got[1], N, 1 - 0.75**3, "idle host")


def test_weighted_least_request_divides_weight_by_active_requests() -> None:
    endpoints = [ep(1, weight=2), ep(2, weight=1)]
    stats = {e.authority: HostStats(e.authority, -1e9) for e in endpoints}
    stats[endpoints[0].authority].active = 3  # effective weight 2/4 vs 1/1
    ctx = BuildContext("c", LeastRequestConfig(), lambda e: stats[e.authority])
    p = build_picker("c", eds(loc("a", endpoints)), get_policy("least_request"), ctx=ctx)
    got = Counter(p.pick().port for _ in range(3000))
    # EDF is deterministic: weights 0.5 and 1 give exactly 1:2 over whole cycles.
    assert got == {1: 1000, 2: 2000}


def test_pick_first_sticks_to_the_first_usable_endpoint() -> None:
    p = picker(loc("a", [ep(1, HealthStatus.DRAINING), ep(2), ep(3)]), policy="pick_first")
    assert {p.pick().port for _ in range(50)} == {2}


def test_pick_first_shuffle_spreads_clients() -> None:
    endpoints = [ep(p) for p in range(1, 5)]
    ctx = BuildContext("c", PickFirstConfig(shuffle_address_list=True))
    firsts = Counter(
        build_picker("c", eds(loc("a", endpoints)), get_policy("pick_first"), ctx=ctx).pick().port
        for _ in range(4000)
    )
    for port in (1, 2, 3, 4):
        assert_binomial(firsts[port], 4000, 0.25, f"port {port}")


def test_slow_start_factor_follows_envoy_formula() -> None:
    config = SlowStartConfig(window_s=10.0, aggression=2.0, min_weight_percent=10.0)
    assert slow_start_factor(config, 0.0, 10.0) == 1.0
    assert slow_start_factor(config, 0.0, 2.5) == pytest.approx((0.25) ** 0.5)
    assert slow_start_factor(config, 0.0, 0.0) == pytest.approx(0.1)  # floor (1 ms ramp < 10%)
    linear = SlowStartConfig(window_s=10.0)
    assert slow_start_factor(linear, 0.0, 4.0) == pytest.approx(0.4)


@pytest.mark.parametrize("policy", ["round_robin", "least_request"])
def test_slow_start_ramps_a_new_endpoint(policy: str) -> None:
    now = [100.0]
    old, new = ep(1), ep(2)
    stats = {
        old.authority: HostStats(old.authority, 0.0),
        new.authority: HostStats(new.authority, 95.0),
    }
    slow = SlowStartConfig(window_s=10.0)
    config = (
        RoundRobinConfig(slow) if policy == "round_robin" else LeastRequestConfig(slow_start=slow)
    )
    ctx = BuildContext("c", config, lambda e: stats[e.authority], lambda: now[0])
    p = build_picker("c", eds(loc("a", [old, new])), get_policy(policy), ctx=ctx)
    half = Counter(p.pick().port for _ in range(3000))
    # Halfway through the window the new host weighs 0.5: one pick in three.
    assert abs(half[2] - 1000) <= 2
    now[0] = 106.0  # past the window: full weight
    full = Counter(p.pick().port for _ in range(3000))
    assert abs(full[2] - 1500) <= 2


def test_unknown_lb_config_values_are_refused_by_name() -> None:
    ctx = BuildContext("c", LeastRequestConfig(choice_count=1))
    with pytest.raises(ValueError, match="choice_count"):
        build_picker("c", eds(loc("a", [ep(1)])), get_policy("least_request"), ctx=ctx)
