"""Fault injection and local rate limits as Envoy HTTP filter configs.

A rule's ``fault`` becomes that route's HTTPFault (per-route config of the
``envoy.filters.http.fault`` filter). The ``meshlib.dev/fault-headers``
extension turns on Envoy's ``x-envoy-fault-*`` request headers (header_delay,
header_abort) for the whole service. Percentages are per million, as Istio
writes them. gRPC status names become their numeric codes.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from controlplane.traffic_model import (
    FaultAbort,
    FaultDelay,
    HTTPFaultInjection,
    LocalRateLimit,
    VirtualServiceExtensions,
)
from controlplane.translate.common import duration, per_million
from controlplane.translate.errors import TranslationError

GRPC_STATUS_CODES = {
    name: code
    for code, name in enumerate(
        (
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        )
    )
}
_ALL = percent_pb2.FractionalPercent(
    numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
)


def rule_fault(
    fault: HTTPFaultInjection, extensions: VirtualServiceExtensions, where: str
) -> fault_pb2.HTTPFault:
    """The per-route HTTPFault of a rule's ``fault``."""
    if fault.delay is None and fault.abort is None:
        raise TranslationError(f"{where}: a fault needs a delay or an abort")
    config = fault_pb2.HTTPFault()
    if fault.delay is not None:
        config.delay.CopyFrom(_delay(fault.delay, f"{where}.delay"))
    if fault.abort is not None:
        config.abort.CopyFrom(_abort(fault.abort, f"{where}.abort"))
    _limit(config, extensions)
    return config


def header_faults(extensions: VirtualServiceExtensions) -> fault_pb2.HTTPFault | None:
    """Faults requested by ``x-envoy-fault-*`` headers, when the service allows them."""
    if not extensions.fault_headers_enabled:
        return None
    config = fault_pb2.HTTPFault(
        delay=common_fault_pb2.FaultDelay(
            header_delay=common_fault_pb2.FaultDelay.HeaderDelay(), percentage=_ALL
        ),
        abort=fault_pb2.FaultAbort(
            header_abort=fault_pb2.FaultAbort.HeaderAbort(), percentage=_ALL
        ),
    )
    _limit(config, extensions)
    return config


def local_rate_limit(
    limit: LocalRateLimit, stat_prefix: str, where: str
) -> local_rate_limit_pb2.LocalRateLimit:
    """A token bucket enforced on every request (filter enabled and enforced 100%)."""
    if limit.max_tokens < 1 or limit.tokens_per_fill < 1 or limit.fill_interval_s <= 0:
        raise TranslationError(
            f"{where}: local rate limit needs max_tokens >= 1, tokens_per_fill >= 1 "
            "and fill_interval > 0"
        )
    if limit.status not in http_status_pb2.StatusCode.values():
        raise TranslationError(f"{where}: local rate limit status {limit.status} is not known")
    everything = base_pb2.RuntimeFractionalPercent(default_value=_ALL)
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        status=http_status_pb2.HttpStatus(code=limit.status),
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=limit.max_tokens,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.tokens_per_fill),
            fill_interval=duration(limit.fill_interval_s),
        ),
        filter_enabled=everything,
        filter_enforced=everything,
    )


def _delay(delay: FaultDelay, where: str) -> common_fault_pb2.FaultDelay:
    if delay.fixed_delay_s <= 0:
        raise TranslationError(f"{where}.fixedDelay: must be > 0, got {delay.fixed_delay_s}s")
    return common_fault_pb2.FaultDelay(
        fixed_delay=duration(delay.fixed_delay_s),
        percentage=per_million(delay.percentage, f"{where}.percentage"),
    )


def _abort(abort: FaultAbort, where: str) -> fault_pb2.FaultAbort:
    config = fault_pb2.FaultAbort(percentage=per_million(abort.percentage, f"{where}.percentage"))
    if (abort.http_status is None) == (abort.grpc_status is None):
        raise TranslationError(f"{where}: exactly one of httpStatus and grpcStatus is required")
    if abort.http_status is not None:
        if not 200 <= abort.http_status < 600:
            raise TranslationError(
                f"{where}.httpStatus: {abort.http_status} is not within [200, 599]"
            )
        config.http_status = abort.http_status
    elif abort.grpc_status is not None:
        code = GRPC_STATUS_CODES.get(abort.grpc_status.upper())
        if code is None:
            raise TranslationError(
                f"{where}.grpcStatus: {abort.grpc_status!r} is not a gRPC status code name"
            )
        config.grpc_status = code
    return config


def _limit(config: fault_pb2.HTTPFault, extensions: VirtualServiceExtensions) -> None:
    if extensions.max_active_faults is not None:
        config.max_active_faults.CopyFrom(
            wrappers_pb2.UInt32Value(value=extensions.max_active_faults)
        )
