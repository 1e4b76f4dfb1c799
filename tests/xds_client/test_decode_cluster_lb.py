"""CDS load-balancing policies and configs, and common_lb_config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.pick_first.v3 import pick_first_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client.resources import (
    CommonLbConfig,
    LeastRequestConfig,
    MaglevConfig,
    PickFirstConfig,
    RandomConfig,
    RingHashConfig,
    RoundRobinConfig,
    SlowStartConfig,
    ZoneAwareLbConfig,
)
from tests.xds_client.cds_helpers import CLUSTER_NAME, decode_with, typed
from tests.xds_client.change_steps import all_of

Cluster = cluster_pb2.Cluster

# --- LB policy and config -------------------------------------------------------------


def _least_request(c: Any) -> None:
    c.lb_policy = Cluster.LEAST_REQUEST
    cfg = c.least_request_lb_config
    cfg.choice_count.value = 3
    cfg.active_request_bias.default_value = 0.5
    cfg.slow_start_config.slow_start_window.seconds = 30
    cfg.slow_start_config.aggression.default_value = 2.0
    cfg.slow_start_config.min_weight_percent.value = 20


def _ring(c: Any) -> None:
    c.lb_policy = Cluster.RING_HASH
    c.ring_hash_lb_config.minimum_ring_size.value = 64
    c.ring_hash_lb_config.maximum_ring_size.value = 4096


LB_CASES: list[tuple[str, Callable[[Any], object], str, Any]] = [
    ("default", lambda c: None, "round_robin", RoundRobinConfig()),
    (
        "round robin slow start",
        lambda c: setattr(
            c.round_robin_lb_config.slow_start_config.slow_start_window, "seconds", 10
        ),
        "round_robin",
        RoundRobinConfig(slow_start=SlowStartConfig(window_s=10.0)),
    ),
    (
        "least request",
        _least_request,
        "least_request",
        LeastRequestConfig(3, 0.5, SlowStartConfig(30.0, 2.0, 20.0)),
    ),
    ("ring hash", _ring, "ring_hash", RingHashConfig(64, 4096)),
    (
        "ring hash defaults",
        lambda c: setattr(c, "lb_policy", Cluster.RING_HASH),
        "ring_hash",
        RingHashConfig(1024, 8 * 1024 * 1024),
    ),
    (
        "maglev",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.MAGLEV),
            lambda c: setattr(c.maglev_lb_config.table_size, "value", 251),
        ),
        "maglev",
        MaglevConfig(251),
    ),
    ("random", lambda c: setattr(c, "lb_policy", Cluster.RANDOM), "random", RandomConfig()),
    (
        "typed pick first",
        typed(pick_first_pb2.PickFirst(shuffle_address_list=True)),
        "pick_first",
        PickFirstConfig(True),
    ),
    (
        "typed ring hash",
        typed(ring_hash_pb2.RingHash(hash_function=1, minimum_ring_size={"value": 10})),
        "ring_hash",
        RingHashConfig(10, 8 * 1024 * 1024),
    ),
    (
        "typed maglev default",
        typed(maglev_pb2.Maglev()),
        "maglev",
        MaglevConfig(65537),
    ),
    (
        "typed least request",
        typed(least_request_pb2.LeastRequest(choice_count={"value": 4})),
        "least_request",
        LeastRequestConfig(choice_count=4),
    ),
    ("typed random", typed(random_pb2.Random()), "random", RandomConfig()),
]


@pytest.mark.parametrize(
    ("change", "name", "config"), [c[1:] for c in LB_CASES], ids=[c[0] for c in LB_CASES]
)
def test_lb_policy_and_config(change: Callable[[Any], object], name: str, config: Any) -> None:
    got = decode_with(change)
    assert (got.lb_policy, got.lb_config) == (name, config)


def test_common_lb_config() -> None:
    def change(c: Any) -> None:
        common = c.common_lb_config
        common.healthy_panic_threshold.value = 25.0
        common.zone_aware_lb_config.routing_enabled.value = 80.0
        common.zone_aware_lb_config.min_cluster_size.value = 3
        common.zone_aware_lb_config.fail_traffic_on_panic = True

    got = decode_with(change)
    assert got.common_lb_config == CommonLbConfig(25.0, ZoneAwareLbConfig(80.0, 3, True), False)
    weighted = decode_with(lambda c: c.common_lb_config.locality_weighted_lb_config.SetInParent())
    assert weighted.common_lb_config == CommonLbConfig(locality_weighted=True)
    assert decode_with(lambda c: None).common_lb_config == CommonLbConfig(50.0, None, False)


def test_typed_policy_locality_setting_wins() -> None:
    rr = round_robin_pb2.RoundRobin()
    rr.locality_lb_config.zone_aware_lb_config.min_cluster_size.value = 2

    def change(c: Any) -> None:
        typed(rr)(c)
        c.common_lb_config.locality_weighted_lb_config.SetInParent()

    got = decode_with(change)
    assert got.common_lb_config.zone_aware == ZoneAwareLbConfig(min_cluster_size=2)
    assert not got.common_lb_config.locality_weighted
    ring = decode_with(typed(ring_hash_pb2.RingHash(locality_weighted_lb_config={})))
    assert ring.common_lb_config.locality_weighted


INVALID_LB: list[tuple[str, Callable[[Any], object], str]] = [
    (
        "least request choice count",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.LEAST_REQUEST),
            lambda c: setattr(c.least_request_lb_config.choice_count, "value", 1),
        ),
        "least_request_lb_config.choice_count: must be >= 2, got 1",
    ),
    (
        "least request bias",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.LEAST_REQUEST),
            lambda c: setattr(c.least_request_lb_config.active_request_bias, "default_value", -1),
        ),
        "least_request_lb_config.active_request_bias: must be >= 0, got -1",
    ),
    (
        "slow start aggression",
        all_of(
            lambda c: setattr(
                c.round_robin_lb_config.slow_start_config.slow_start_window, "seconds", 1
            ),
            lambda c: c.round_robin_lb_config.slow_start_config.aggression.SetInParent(),
        ),
        "round_robin_lb_config.slow_start_config.aggression: must be greater than 0",
    ),
    (
        "slow start min weight",
        all_of(
            lambda c: setattr(
                c.round_robin_lb_config.slow_start_config.slow_start_window, "seconds", 1
            ),
            lambda c: setattr(
                c.round_robin_lb_config.slow_start_config.min_weight_percent, "value", 101
            ),
        ),
        "round_robin_lb_config.slow_start_config.min_weight_percent: 101.0 is not a percentage",
    ),
    (
        "ring min above max",
        all_of(
            lambda c: _ring(c),
            lambda c: setattr(c.ring_hash_lb_config.minimum_ring_size, "value", 5000),
        ),
        "ring_hash_lb_config: minimum_ring_size is above maximum_ring_size",
    ),
    (
        "ring max too big",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.RING_HASH),
            lambda c: setattr(
                c.ring_hash_lb_config.maximum_ring_size, "value", 8 * 1024 * 1024 + 1
            ),
        ),
        "ring_hash_lb_config.maximum_ring_size: above 8388608",
    ),
    (
        "ring murmur",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.RING_HASH),
            lambda c: setattr(c.ring_hash_lb_config, "hash_function", 1),
        ),
        "ring_hash_lb_config.hash_function: only XX_HASH is supported",
    ),
    (
        "typed ring murmur",
        typed(ring_hash_pb2.RingHash(hash_function=2)),
        "load_balancing_policy.policies[0].typed_extension_config.typed_config.hash_function: "
        "only XX_HASH is supported",
    ),
    (
        "typed ring zero min",
        typed(ring_hash_pb2.RingHash(minimum_ring_size={"value": 0})),
        "typed_config.minimum_ring_size: must be greater than 0",
    ),
    (
        "maglev not prime",
        all_of(
            lambda c: setattr(c, "lb_policy", Cluster.MAGLEV),
            lambda c: setattr(c.maglev_lb_config.table_size, "value", 100),
        ),
        "maglev_lb_config.table_size: 100 is not a prime number",
    ),
    (
        "typed maglev too big",
        typed(maglev_pb2.Maglev(table_size={"value": 5_000_101})),
        "typed_config.table_size: 5000101 is above 5000011",
    ),
    (
        "typed least request full scan",
        typed(least_request_pb2.LeastRequest(selection_method=1)),
        "typed_config: full-scan selection is not supported",
    ),
    (
        "cluster provided",
        lambda c: setattr(c, "lb_policy", Cluster.CLUSTER_PROVIDED),
        "lb_policy CLUSTER_PROVIDED is not supported",
    ),
    (
        "panic threshold",
        lambda c: setattr(c.common_lb_config.healthy_panic_threshold, "value", 150),
        "common_lb_config.healthy_panic_threshold: 150.0 is not a percentage in 0..100",
    ),
    (
        "zone aware routing",
        lambda c: setattr(c.common_lb_config.zone_aware_lb_config.routing_enabled, "value", -1),
        "common_lb_config.zone_aware_lb_config.routing_enabled: -1.0 is not a percentage",
    ),
    (
        "consistent hashing config",
        lambda c: c.common_lb_config.consistent_hashing_lb_config.SetInParent(),
        "common_lb_config.consistent_hashing_lb_config: not supported",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [c[1:] for c in INVALID_LB], ids=[c[0] for c in INVALID_LB]
)
def test_invalid_lb_config(change: Callable[[Any], object], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode_with(change)
    assert str(info.value).startswith(CLUSTER_NAME + ": ")
    assert expected in str(info.value)
