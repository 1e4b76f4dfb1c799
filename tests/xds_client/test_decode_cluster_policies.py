"""CDS policies of issues 3 and 4: LB configs, common_lb_config, outlier
detection, circuit breakers, upstream HTTP options and the degraded switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client.resources import (
    CircuitBreakerThresholds,
    HttpProtocolOptions,
    OutlierDetection,
    RetryBudget,
    UpstreamProtocol,
)
from tests.xds_client import xds_builders as b
from tests.xds_client.cds_helpers import CLUSTER_NAME, HPO_KEY, decode_with
from tests.xds_client.change_steps import all_of

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


def _protocol_options(options: Any) -> Callable[[Any], object]:
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


def _metadata(value: Any) -> Callable[[Any], object]:
    return lambda c: c.metadata.filter_metadata["meshlib"].update({"degraded": value})


def test_degraded_switch() -> None:
    assert not decode_with(lambda c: None).degraded
    assert decode_with(_metadata(True)).degraded
    assert not decode_with(_metadata(False)).degraded
    other = decode_with(lambda c: c.metadata.filter_metadata["meshlib"].update({"x": 1}))
    assert not other.degraded


INVALID: list[tuple[str, Callable[[Any], object], str]] = [
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
        all_of(
            lambda c: setattr(c.outlier_detection.base_ejection_time, "seconds", 60),
            lambda c: setattr(c.outlier_detection.max_ejection_time, "seconds", 10),
        ),
        "outlier_detection.max_ejection_time: must not be less than base_ejection_time",
    ),
    (
        "duplicate breaker priority",
        all_of(
            lambda c: c.circuit_breakers.thresholds.add(),
            lambda c: c.circuit_breakers.thresholds.add(),
        ),
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
def test_invalid_cluster_policies(change: Callable[[Any], object], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode_with(change)
    assert str(info.value).startswith(CLUSTER_NAME + ": ")
    assert expected in str(info.value)
