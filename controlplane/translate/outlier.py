"""DestinationRule ``outlierDetection`` -> Cluster.outlier_detection, as Istio maps it.

* consecutive 5xx: Istio's default 5 when the block is present and the field
  omitted; 0 turns it off (``enforcing_consecutive_5xx`` 0);
* consecutive gateway errors: on (enforcing 100) only when set above 0;
* local-origin failures: only with ``splitExternalLocalOriginErrors`` (Envoy
  ignores them otherwise, so asking for them without the split is an error);
* success rate is off (``enforcing_success_rate`` 0, Envoy's default is 100)
  unless the ``meshlib.dev/outlier-success-rate`` annotation sets it;
  failure percentage comes from ``meshlib.dev/outlier-failure-percentage``.
  Either annotation alone turns outlier detection on, with consecutive errors off;
* ``minHealthPercent`` -> ``common_lb_config.healthy_panic_threshold``, always
  set when outlier detection is (0 disables Envoy's default 50% panic mode).

gRPC (gRFC A50) implements success rate and failure percentage only and
ignores the consecutive-error fields; every percentage written here is <= 100
so gRPC does not NACK.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.type.v3 import percent_pb2

from controlplane.destination_policy import EffectivePolicy
from controlplane.traffic_model import (
    FailurePercentageEjection,
    OutlierDetection,
    SuccessRateEjection,
)
from controlplane.translate.common import duration
from controlplane.translate.errors import TranslationError

ISTIO_DEFAULT_CONSECUTIVE_5XX = 5
_ON = 100  # enforcing percentage: always eject when detected


def apply_outlier_detection(cluster: cluster_pb2.Cluster, policy: EffectivePolicy) -> None:
    """Set outlier_detection and the panic threshold when ``policy`` ejects outliers."""
    if not policy.outlier_detection_enabled:
        return
    settings = policy.outlier_detection
    detection = outlier_detection_pb2.OutlierDetection()
    detection.enforcing_success_rate.value = 0
    if settings is None:
        detection.enforcing_consecutive_5xx.value = 0
        min_health_percent = 0
    else:
        _consecutive_errors(detection, settings, policy.where)
        detection.interval.CopyFrom(duration(settings.interval_s))
        detection.base_ejection_time.CopyFrom(duration(settings.base_ejection_time_s))
        detection.max_ejection_percent.value = _percent(
            settings.max_ejection_percent, "maxEjectionPercent", policy.where
        )
        min_health_percent = settings.min_health_percent
    success_rate = policy.extensions.success_rate_ejection
    if success_rate is not None:
        _success_rate(detection, success_rate, policy.where)
    failure_percentage = policy.extensions.failure_percentage_ejection
    if failure_percentage is not None:
        _failure_percentage(detection, failure_percentage, policy.where)
    cluster.outlier_detection.CopyFrom(detection)
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=_percent(min_health_percent, "minHealthPercent", policy.where))
    )


def _consecutive_errors(
    detection: outlier_detection_pb2.OutlierDetection, settings: OutlierDetection, where: str
) -> None:
    errors = settings.consecutive_5xx_errors
    if errors is None:
        errors = ISTIO_DEFAULT_CONSECUTIVE_5XX
    detection.consecutive_5xx.value = _count(errors, "consecutive5xxErrors", where)
    detection.enforcing_consecutive_5xx.value = _ON if errors > 0 else 0
    gateway = settings.consecutive_gateway_errors
    if gateway:
        detection.consecutive_gateway_failure.value = _count(
            gateway, "consecutiveGatewayErrors", where
        )
        detection.enforcing_consecutive_gateway_failure.value = _ON
    local = settings.consecutive_local_origin_failures
    if settings.split_external_local_origin_errors:
        detection.split_external_local_origin_errors = True
        detection.enforcing_local_origin_success_rate.value = 0
        if local:
            detection.consecutive_local_origin_failure.value = _count(
                local, "consecutiveLocalOriginFailures", where
            )
            detection.enforcing_consecutive_local_origin_failure.value = _ON
    elif local:
        raise TranslationError(
            f"{where}: outlierDetection.consecutiveLocalOriginFailures needs "
            "splitExternalLocalOriginErrors: true"
        )


def _success_rate(
    detection: outlier_detection_pb2.OutlierDetection, rate: SuccessRateEjection, where: str
) -> None:
    name = "meshlib.dev/outlier-success-rate"
    detection.enforcing_success_rate.value = _percent(rate.enforcing, f"{name} enforcing", where)
    detection.success_rate_minimum_hosts.value = _count(rate.minimum_hosts, name, where)
    detection.success_rate_request_volume.value = _count(rate.request_volume, name, where)
    detection.success_rate_stdev_factor.value = _count(rate.stdev_factor, name, where)


def _failure_percentage(
    detection: outlier_detection_pb2.OutlierDetection,
    failures: FailurePercentageEjection,
    where: str,
) -> None:
    name = "meshlib.dev/outlier-failure-percentage"
    detection.failure_percentage_threshold.value = _percent(
        failures.threshold, f"{name} threshold", where
    )
    detection.enforcing_failure_percentage.value = _percent(
        failures.enforcing, f"{name} enforcing", where
    )
    detection.failure_percentage_minimum_hosts.value = _count(failures.minimum_hosts, name, where)
    detection.failure_percentage_request_volume.value = _count(failures.request_volume, name, where)


def _percent(value: int, field: str, where: str) -> int:
    if not 0 <= value <= 100:
        raise TranslationError(f"{where}: {field} must be within 0..100, got {value}")
    return value


def _count(value: int, field: str, where: str) -> int:
    if value < 0:
        raise TranslationError(f"{where}: {field} must not be negative, got {value}")
    return value
