"""What httpx and gRPC callers see for each resilience error."""

from __future__ import annotations

import grpc
import grpc.aio
import httpx
import pytest

from meshlib.errors import (
    CircuitBreakerOverflow,
    CircuitOpenError,
    DeadlineExceeded,
    InjectedFaultError,
    PerTryTimeoutError,
    RateLimitedError,
    RequestNotReplayable,
    ResilienceError,
)
from meshlib.transport.resilience_errors import (
    as_aio_rpc_error,
    as_rpc_error,
    envoy_response,
    resilience_error_as_httpx,
)

REQUEST = httpx.Request("GET", "http://sessions:8080/x")


def _overflow() -> CircuitBreakerOverflow:
    return CircuitBreakerOverflow("full", cluster="c", threshold="max_requests", limit=2)


def _open() -> CircuitOpenError:
    return CircuitOpenError("open", name="c", state="OPEN", retry_after_s=3.0)


CASES: list[tuple[ResilienceError, type[Exception], grpc.StatusCode]] = [
    (DeadlineExceeded("late"), httpx.TimeoutException, grpc.StatusCode.DEADLINE_EXCEEDED),
    (PerTryTimeoutError("try late"), httpx.TimeoutException, grpc.StatusCode.DEADLINE_EXCEEDED),
    (_overflow(), httpx.ConnectError, grpc.StatusCode.UNAVAILABLE),
    (_open(), httpx.ConnectError, grpc.StatusCode.UNAVAILABLE),
    (RateLimitedError("empty"), httpx.HTTPStatusError, grpc.StatusCode.UNAVAILABLE),
    (
        InjectedFaultError("abort", http_status=None, grpc_status=8),
        httpx.HTTPStatusError,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    (
        InjectedFaultError("abort", http_status=404, grpc_status=None),
        httpx.HTTPStatusError,
        grpc.StatusCode.UNIMPLEMENTED,
    ),
    (RequestNotReplayable("streamed"), httpx.RequestError, grpc.StatusCode.UNAVAILABLE),
]  # fmt: skip


@pytest.mark.parametrize(("error", "httpx_type", "status"), CASES)
def test_twins_are_both_the_meshlib_error_and_the_clients_error(
    error: ResilienceError, httpx_type: type[Exception], status: grpc.StatusCode
) -> None:
    http = resilience_error_as_httpx(error, REQUEST)
    assert isinstance(http, type(error)) and isinstance(http, httpx_type)
    assert str(http) == str(error) and http.__dict__.items() >= error.__dict__.items()
    assert isinstance(http, httpx.HTTPError) and http.request is REQUEST

    sync = as_rpc_error(error)
    assert isinstance(sync, type(error)) and isinstance(sync, grpc.RpcError)
    assert isinstance(sync, grpc.Call) and sync.code() is status
    assert str(error) in (sync.details() or "")

    aio = as_aio_rpc_error(error)
    assert isinstance(aio, type(error)) and isinstance(aio, grpc.aio.AioRpcError)
    assert aio.code() is status and str(error) in (aio.details() or "")


def test_status_errors_carry_the_envoy_answer() -> None:
    limited = resilience_error_as_httpx(
        RateLimitedError("empty", response_headers=(("x-rl", "1"),)), REQUEST
    )
    assert isinstance(limited, httpx.HTTPStatusError)
    assert limited.response.status_code == 429
    assert limited.response.headers["x-rl"] == "1"
    assert limited.response.text == "local_rate_limited"

    aborted = resilience_error_as_httpx(
        InjectedFaultError("a", http_status=None, grpc_status=14), REQUEST
    )
    assert isinstance(aborted, httpx.HTTPStatusError)
    assert aborted.response.status_code == 503
    assert aborted.response.headers["grpc-status"] == "14"


def test_envoy_response_for_overflow_and_timeout() -> None:
    overflow = envoy_response(_overflow(), REQUEST)
    assert overflow.status_code == 503 and overflow.headers["x-envoy-overloaded"] == "true"
    assert envoy_response(DeadlineExceeded("late"), REQUEST).status_code == 504


def test_not_replayable_keeps_the_last_grpc_status() -> None:
    cause = as_rpc_error(InjectedFaultError("x", http_status=None, grpc_status=13))
    error = RequestNotReplayable("streamed")
    error.__cause__ = cause
    assert as_rpc_error(error).code() is grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
