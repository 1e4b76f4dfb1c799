"""Resilience settings of a VirtualService HTTP rule: ``retries`` and ``fault``.

``retryOn`` takes Envoy's HTTP retry conditions (x-envoy-retry-on), gRPC's
(x-envoy-retry-grpc-on) and plain HTTP status codes, comma-separated, as Istio
passes them through; anything else is refused by name.
"""

from __future__ import annotations

from controlplane.config.durations import duration
from controlplane.config.fields import Fields
from controlplane.traffic_model import FaultAbort, FaultDelay, HTTPFaultInjection, HTTPRetry

HTTP_RETRY_ON = (
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
)
GRPC_RETRY_ON = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
GRPC_STATUS_NAMES = (
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
RETRY_FIELDS = ("attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities")
RETRY_NOT_YET = ("retryIgnorePreviousHosts", "backoff")
MAX_INT32 = 2**31 - 1
_USE_PERCENTAGE = {"percent": "deprecated field; use percentage ({value: N})"}


def parse_retries(fields: Fields) -> HTTPRetry | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(RETRY_FIELDS, RETRY_NOT_YET, "retries")
    attempts = fields.integer("attempts", minimum=0, maximum=MAX_INT32, required=True)
    per_try_timeout = duration(fields, "perTryTimeout")
    retry_on = _retry_on(fields)
    remote = fields.boolean("retryRemoteLocalities")
    if ctx.count != before or attempts is None:
        return None
    return HTTPRetry(
        attempts=attempts,
        per_try_timeout_s=per_try_timeout,
        retry_on=retry_on,
        retry_remote_localities=bool(remote),
    )


def _retry_on(fields: Fields) -> tuple[str, ...]:
    text = fields.string("retryOn")
    if text is None:
        return ()
    conditions: list[str] = []
    for raw in text.split(","):
        condition = raw.strip()
        if _known_condition(condition):
            conditions.append(condition)
        elif not condition:
            fields.ctx.error(fields.at("retryOn"), f"empty condition in {text!r}")
        else:
            fields.ctx.error(
                fields.at("retryOn"),
                f"unknown retry condition {condition!r} (use Envoy's HTTP conditions "
                f"{', '.join(HTTP_RETRY_ON)}; gRPC conditions {', '.join(GRPC_RETRY_ON)}; "
                "or an HTTP status code such as 503)",
            )
    return tuple(conditions)


def _known_condition(condition: str) -> bool:
    if condition in HTTP_RETRY_ON or condition in GRPC_RETRY_ON:
        return True
    return condition.isdigit() and 100 <= int(condition) <= 599


def parse_fault(fields: Fields) -> HTTPFaultInjection | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(("delay", "abort"), what="a fault")
    delay_fields = fields.mapping("delay")
    abort_fields = fields.mapping("abort")
    if not fields.present("delay") and not fields.present("abort"):
        ctx.error(fields.path, "must set delay, abort or both")
    delay = _delay(delay_fields) if delay_fields is not None else None
    abort = _abort(abort_fields) if abort_fields is not None else None
    if ctx.count != before:
        return None
    return HTTPFaultInjection(delay=delay, abort=abort)


def _delay(fields: Fields) -> FaultDelay | None:
    before = fields.ctx.count
    fields.reject_unknown(
        ("fixedDelay", "percentage"), ("exponentialDelay",), "a delay", _USE_PERCENTAGE
    )
    fixed = duration(fields, "fixedDelay", required=True)
    percentage = fields.percentage("percentage")
    if fields.ctx.count != before or fixed is None:
        return None
    return FaultDelay(fixed_delay_s=fixed, percentage=100.0 if percentage is None else percentage)


def _abort(fields: Fields) -> FaultAbort | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(
        ("httpStatus", "grpcStatus", "percentage"), ("http2Error",), "an abort", _USE_PERCENTAGE
    )
    http_status = fields.integer("httpStatus", minimum=200, maximum=599)
    grpc_status = fields.string("grpcStatus")
    if grpc_status is not None and grpc_status not in GRPC_STATUS_NAMES:
        ctx.error(
            fields.at("grpcStatus"),
            f"unknown gRPC status {grpc_status!r} (use a code name such as UNAVAILABLE: "
            f"{', '.join(GRPC_STATUS_NAMES)})",
        )
    if fields.exclusive("httpStatus", "grpcStatus") and not (
        fields.present("httpStatus") or fields.present("grpcStatus")
    ):
        ctx.error(fields.path, "must set one of httpStatus, grpcStatus")
    percentage = fields.percentage("percentage")
    if ctx.count != before:
        return None
    return FaultAbort(
        percentage=100.0 if percentage is None else percentage,
        http_status=http_status,
        grpc_status=grpc_status,
    )
