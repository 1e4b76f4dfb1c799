"""CDS policies of issues 3 and 4: LB configs, common_lb_config, outlier
detection, circuit breakers, upstream HTTP options and the degraded switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.pick_first.v3 import pick_first_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import CLUSTER
from meshlib.xds_client.resources import (
    CircuitBreakerThresholds,
    ClusterResource,
    CommonLbConfig,
    HttpProtocolOptions,
    LeastRequestConfig,
    MaglevConfig,
    OutlierDetection,
    PickFirstConfig,
    RandomConfig,
    RetryBudget,
    RingHashConfig,
    RoundRobinConfig,
    SlowStartConfig,
    UpstreamProtocol,
    ZoneAwareLbConfig,
)
from tests.xds_client import xds_builders as b

Cluster = cluster_pb2.Cluster
CLUSTER_NAME = 'Cluster "c1"'
HPO_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def decode_with(change: Callable[[Any], None]) -> ClusterResource:
    msg = b.cluster()
    change(msg)
    return CLUSTER.decode(b.pack(msg))


def typed(*configs: Any) -> Callable[[Any], None]:
    def change(c: Any) -> None:
        for i, config in enumerate(configs):
            c.load_balancing_policy.policies.add(
                typed_extension_config={"name": f"p{i}", "typed_config": b.pack(config)}
            )

    return change


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


LB_CASES: list[tuple[str, Callable[[Any], None], str, Any]] = [
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
        lambda c: (
            setattr(c, "lb_policy", Cluster.MAGLEV),
            setattr(c.maglev_lb_config.table_size, "value", 251),
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
def test_lb_policy_and_config(change: Callable[[Any], None], name: str, config: Any) -> None:
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


# --- outlier detection, breakers, protocol options, degraded ---------------------------


def test_outlier_detection_defaults_are_envoys() -> None:
    assert decode_with(lambda c: None).outlier_detection is None
    got = decode_with(lambda c: c.outlier_detection.SetInParent()).outlier_detection
    assert got == OutlierDetection()
    assert (got.interval_s, got.base_ejection_time_s, got.max_ejection_time_s) == (10, 30, 300)
    assert (got.enforcing_consecutive_5xx, got.enforcing_failure_percentage) == (100, 0)
    long_base = decode_with(
        lambda c: setattr(c.outlier_detection.base_ejection_time, "seconds", 600)
    )
    assert long_base.outlier_detection is not None
    assert long_base.outlier_detection.max_ejection_time_s == 600


def test_outlier_detection_every_field() -> None:
    def change(c: Any) -> None:
        od = c.outlier_detection
        od.consecutive_5xx.value = 3
        od.consecutive_gateway_failure.value = 2
        od.consecutive_local_origin_failure.value = 4
        od.interval.seconds = 1
        od.base_ejection_time.seconds = 5
        od.max_ejection_time.seconds = 50
        od.max_ejection_time_jitter.nanos = 100_000_000
        od.max_ejection_percent.value = 100
        od.enforcing_consecutive_5xx.value = 90
        od.enforcing_consecutive_gateway_failure.value = 80
        od.enforcing_consecutive_local_origin_failure.value = 70
        od.enforcing_success_rate.value = 60
        od.enforcing_local_origin_success_rate.value = 50
        od.enforcing_failure_percentage.value = 40
        od.enforcing_failure_percentage_local_origin.value = 30
        od.success_rate_minimum_hosts.value = 2
        od.success_rate_request_volume.value = 20
        od.success_rate_stdev_factor.value = 1000
        od.failure_percentage_threshold.value = 50
        od.failure_percentage_minimum_hosts.value = 1
        od.failure_percentage_request_volume.value = 10
        od.split_external_local_origin_errors = True
        od.successful_active_health_check_uneject_host.value = False
        od.always_eject_one_host.value = True

    assert decode_with(change).outlier_detection == OutlierDetection(
        interval_s=1.0,
        base_ejection_time_s=5.0,
        max_ejection_time_s=50.0,
        max_ejection_time_jitter_s=0.1,
        max_ejection_percent=100,
        consecutive_5xx=3,
        consecutive_gateway_failure=2,
        consecutive_local_origin_failure=4,
        enforcing_consecutive_5xx=90,
        enforcing_consecutive_gateway_failure=80,
        enforcing_consecutive_local_origin_failure=70,
        enforcing_success_rate=60,
        enforcing_local_origin_success_rate=50,
        enforcing_failure_percentage=40,
        enforcing_failure_percentage_local_origin=30,
        success_rate_minimum_hosts=2,
        success_rate_request_volume=20,
        success_rate_stdev_factor=1000,
        failure_percentage_threshold=50,
        failure_percentage_minimum_hosts=1,
        failure_percentage_request_volume=10,
        split_external_local_origin_errors=True,
        successful_active_health_check_uneject_host=False,
        always_eject_one_host=True,
    )


def test_circuit_breakers() -> None:
    assert decode_with(lambda c: None).circuit_breakers == CircuitBreakerThresholds(
        1024, 1024, 1024, 3
    )

    def change(c: Any) -> None:
        c.circuit_breakers.thresholds.add(priority=1, max_requests={"value": 1})
        default = c.circuit_breakers.thresholds.add(
            max_connections={"value": 10},
            max_pending_requests={"value": 20},
            max_requests={"value": 30},
            max_retries={"value": 4},
            track_remaining=True,
        )
        default.retry_budget.budget_percent.value = 10.0
        default.retry_budget.min_retry_concurrency.value = 1

    assert decode_with(change).circuit_breakers == CircuitBreakerThresholds(
        10, 20, 30, 4, RetryBudget(10.0, 1), True
    )
    budget_defaults = decode_with(
        lambda c: c.circuit_breakers.thresholds.add(retry_budget={})
    ).circuit_breakers
    assert budget_defaults.retry_budget == RetryBudget(20.0, 3)


def _protocol_options(options: Any) -> Callable[[Any], None]:
    return lambda c: c.typed_extension_protocol_options[HPO_KEY].CopyFrom(b.pack(options))


def test_http_protocol_options() -> None:
    assert decode_with(lambda c: None).http_protocol_options == HttpProtocolOptions()
    options = hpo_pb2.HttpProtocolOptions(
        common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
            idle_timeout={"seconds": 30},
            max_connection_duration={"seconds": 600},
            max_requests_per_connection={"value": 100},
            max_stream_duration={"seconds": 5},
        ),
        explicit_http_config={"http2_protocol_options": {}},
    )
    got = decode_with(_protocol_options(options)).http_protocol_options
    assert got == HttpProtocolOptions(UpstreamProtocol.HTTP2, 30.0, 600.0, 100, 5.0)
    http1 = hpo_pb2.HttpProtocolOptions(explicit_http_config={"http_protocol_options": {}})
    assert decode_with(_protocol_options(http1)).http_protocol_options == HttpProtocolOptions(
        UpstreamProtocol.HTTP1
    )
    auto = hpo_pb2.HttpProtocolOptions(auto_config={})
    assert decode_with(_protocol_options(auto)).http_protocol_options.upstream_protocol is (
        UpstreamProtocol.AUTO
    )


def _metadata(value: Any) -> Callable[[Any], None]:
    return lambda c: c.metadata.filter_metadata["meshlib"].update({"degraded": value})


def test_degraded_switch() -> None:
    assert not decode_with(lambda c: None).degraded
    assert decode_with(_metadata(True)).degraded
    assert not decode_with(_metadata(False)).degraded
    other = decode_with(lambda c: c.metadata.filter_metadata["meshlib"].update({"x": 1}))
    assert not other.degraded


INVALID: list[tuple[str, Callable[[Any], None], str]] = [
    (
        "least request choice count",
        lambda c: (
            setattr(c, "lb_policy", Cluster.LEAST_REQUEST),
            setattr(c.least_request_lb_config.choice_count, "value", 1),
        ),
        "least_request_lb_config.choice_count: must be >= 2, got 1",
    ),
    (
        "least request bias",
        lambda c: (
            setattr(c, "lb_policy", Cluster.LEAST_REQUEST),
            setattr(c.least_request_lb_config.active_request_bias, "default_value", -1),
        ),
        "least_request_lb_config.active_request_bias: must be >= 0, got -1",
    ),
    (
        "slow start aggression",
        lambda c: (
            setattr(c.round_robin_lb_config.slow_start_config.slow_start_window, "seconds", 1),
            c.round_robin_lb_config.slow_start_config.aggression.SetInParent(),
        ),
        "round_robin_lb_config.slow_start_config.aggression: must be greater than 0",
    ),
    (
        "slow start min weight",
        lambda c: (
            setattr(c.round_robin_lb_config.slow_start_config.slow_start_window, "seconds", 1),
            setattr(c.round_robin_lb_config.slow_start_config.min_weight_percent, "value", 101),
        ),
        "round_robin_lb_config.slow_start_config.min_weight_percent: 101.0 is not a percentage",
    ),
    (
        "ring min above max",
        lambda c: (
            _ring(c),
            setattr(c.ring_hash_lb_config.minimum_ring_size, "value", 5000),
        ),
        "ring_hash_lb_config: minimum_ring_size is above maximum_ring_size",
    ),
    (
        "ring max too big",
        lambda c: (
            setattr(c, "lb_policy", Cluster.RING_HASH),
            setattr(c.ring_hash_lb_config.maximum_ring_size, "value", 8 * 1024 * 1024 + 1),
        ),
        "ring_hash_lb_config.maximum_ring_size: above 8388608",
    ),
    (
        "ring murmur",
        lambda c: (
            setattr(c, "lb_policy", Cluster.RING_HASH),
            setattr(c.ring_hash_lb_config, "hash_function", 1),
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
        lambda c: (
            setattr(c, "lb_policy", Cluster.MAGLEV),
            setattr(c.maglev_lb_config.table_size, "value", 100),
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
    (
        "max ejection percent",
        lambda c: setattr(c.outlier_detection.max_ejection_percent, "value", 101),
        "outlier_detection.max_ejection_percent: 101 is above 100",
    ),
    (
        "enforcing success rate",
        lambda c: setattr(c.outlier_detection.enforcing_success_rate, "value", 200),
        "outlier_detection.enforcing_success_rate: 200 is above 100",
    ),
    (
        "failure percentage threshold",
        lambda c: setattr(c.outlier_detection.failure_percentage_threshold, "value", 101),
        "outlier_detection.failure_percentage_threshold: 101 is above 100",
    ),
    (
        "enforcing failure percentage",
        lambda c: setattr(c.outlier_detection.enforcing_failure_percentage, "value", 101),
        "outlier_detection.enforcing_failure_percentage: 101 is above 100",
    ),
    (
        "zero interval",
        lambda c: c.outlier_detection.interval.SetInParent(),
        "outlier_detection.interval: must be greater than 0",
    ),
    (
        "negative base ejection",
        lambda c: setattr(c.outlier_detection.base_ejection_time, "seconds", -3),
        "outlier_detection.base_ejection_time: invalid duration (seconds=-3, nanos=0)",
    ),
    (
        "max below base ejection",
        lambda c: (
            setattr(c.outlier_detection.base_ejection_time, "seconds", 60),
            setattr(c.outlier_detection.max_ejection_time, "seconds", 10),
        ),
        "outlier_detection.max_ejection_time: must not be less than base_ejection_time",
    ),
    (
        "duplicate breaker priority",
        lambda c: (c.circuit_breakers.thresholds.add(), c.circuit_breakers.thresholds.add()),
        "circuit_breakers.thresholds[1].priority: a second threshold for the same priority",
    ),
    (
        "retry budget percent",
        lambda c: c.circuit_breakers.thresholds.add(
            retry_budget={"budget_percent": {"value": 120}}
        ),
        "circuit_breakers.thresholds[0].retry_budget.budget_percent: 120.0 is not a percentage",
    ),
    (
        "per host thresholds",
        lambda c: c.circuit_breakers.per_host_thresholds.add(),
        "circuit_breakers.per_host_thresholds: not supported",
    ),
    (
        "unknown protocol options",
        lambda c: c.typed_extension_protocol_options["envoy.extensions.other"].CopyFrom(
            b.pack(hpo_pb2.HttpProtocolOptions())
        ),
        'typed_extension_protocol_options["envoy.extensions.other"]: not supported',
    ),
    (
        "protocol options of another type",
        lambda c: c.typed_extension_protocol_options[HPO_KEY].CopyFrom(
            b.pack(protocol_pb2.HttpProtocolOptions())
        ),
        f'typed_extension_protocol_options["{HPO_KEY}"]: expected type.googleapis.com/{HPO_KEY}',
    ),
    (
        "http3",
        _protocol_options(
            hpo_pb2.HttpProtocolOptions(explicit_http_config={"http3_protocol_options": {}})
        ),
        f'typed_extension_protocol_options["{HPO_KEY}"].explicit_http_config: '
        "http3_protocol_options is not supported",
    ),
    (
        "negative idle timeout",
        _protocol_options(
            hpo_pb2.HttpProtocolOptions(
                common_http_protocol_options={"idle_timeout": {"seconds": -1}}
            )
        ),
        "common_http_protocol_options.idle_timeout: invalid duration",
    ),
    (
        "degraded not a bool",
        _metadata("yes"),
        'metadata.filter_metadata["meshlib"].degraded: must be a bool',
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_cluster_policies(change: Callable[[Any], None], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode_with(change)
    assert str(info.value).startswith(CLUSTER_NAME + ": ")
    assert expected in str(info.value)
