"""How one call to an endpoint ended, classified as Envoy's outlier detection does.

HTTP: 2xx-4xx success, 502/503/504 gateway error, any other 5xx a 5xx error;
a connect failure, reset or timeout (no response) is a local-origin failure.
gRPC: the status is first mapped to HTTP as Envoy maps it
(``Grpc::Utility::grpcToHttpStatus``), then classified the same way —
UNAVAILABLE is 503 (gateway error), DEADLINE_EXCEEDED 504, INTERNAL /
UNKNOWN / DATA_LOSS 500, UNIMPLEMENTED 501; a call that never reached the
server (connection refused or reset) is a local-origin failure.
"""

from __future__ import annotations

import asyncio

import grpc
import httpx

from meshlib.balancing.picker import Outcome
from meshlib.errors import DeadlineExceeded
from meshlib.resilience.deadline import cut_by_deadline

#: ``error.type`` of a try that ran out of time (OpenTelemetry's example value).
TIMEOUT_ERROR_TYPE = "timeout"
_TIMEOUTS = (httpx.TimeoutException, DeadlineExceeded, TimeoutError, asyncio.TimeoutError)

_GRPC_TO_HTTP = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# grpc-core's wording when the transport, not the server, failed the call.
_CONNECTION_FAILURE_MARKERS = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "socket closed",
    "connections to all backends failing",
    "endpoint closing",
)


def http_outcome(status: int) -> Outcome:
    """The outcome of a call that got a response with ``status``."""
    if status < 500:
        return Outcome.SUCCESS
    if status in (502, 503, 504):
        return Outcome.GATEWAY_ERROR
    return Outcome.ERROR_5XX


def http_error_outcome(error: BaseException) -> Outcome:
    """The outcome of a call that raised instead of answering.

    Transport errors (connect, read, write, protocol, timeout) are the
    endpoint's; anything else (the caller cancelled, a bug above the
    transport) is not held against it.
    """
    if isinstance(error, httpx.TransportError):
        return Outcome.LOCAL_ORIGIN_FAILURE
    return Outcome.SUCCESS


def http_error_type(error: BaseException) -> str:
    """The metrics' ``error.type`` of an HTTP try that raised: ``timeout`` for any timeout
    (httpx's, meshlib's deadline, or an async try cut at its deadline: sync and async
    label the same outcome alike), else the exception's class name."""
    if isinstance(error, _TIMEOUTS) or cut_by_deadline(error):
        return TIMEOUT_ERROR_TYPE
    return type(error).__qualname__


# Each status's outcome once the connection-failure case is ruled out (500 if unmapped).
_GRPC_OUTCOMES = {code: http_outcome(_GRPC_TO_HTTP.get(code, 500)) for code in grpc.StatusCode}


def grpc_http_status(code: grpc.StatusCode) -> int:
    """Envoy's HTTP status for a gRPC status."""
    return _GRPC_TO_HTTP.get(code, 500)


def grpc_outcome(code: grpc.StatusCode | None, details: str | None = None) -> Outcome:
    """The outcome of a finished call (``code`` None: unknown, counted as 5xx)."""
    if code is None:
        return Outcome.ERROR_5XX
    if code is grpc.StatusCode.UNAVAILABLE and details:
        lowered = details.lower()
        if any(marker in lowered for marker in _CONNECTION_FAILURE_MARKERS):
            return Outcome.LOCAL_ORIGIN_FAILURE
    return _GRPC_OUTCOMES.get(code, Outcome.ERROR_5XX)
