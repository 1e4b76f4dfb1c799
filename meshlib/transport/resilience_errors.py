"""Resilience errors as the httpx and gRPC callers see them.

Every twin is both the meshlib error (``except meshlib.DeadlineExceeded``) and
what that client's users already catch:

==========================  =================================  =====================================
meshlib error               httpx twin (also ...)              gRPC status (sync RpcError / aio)
==========================  =================================  =====================================
DeadlineExceeded            httpx.TimeoutException             DEADLINE_EXCEEDED
PerTryTimeoutError          httpx.TimeoutException             DEADLINE_EXCEEDED
CircuitBreakerOverflow      httpx.ConnectError (not sent)      UNAVAILABLE
CircuitOpenError            httpx.ConnectError (not sent)      UNAVAILABLE
RateLimitedError            httpx.HTTPStatusError, 429         UNAVAILABLE (RESOURCE_EXHAUSTED when
                            response (the configured status)   the limit says so)
InjectedFaultError          httpx.HTTPStatusError with the     the injected gRPC status (an HTTP
                            injected status as a response      status maps as gRPC's HTTP mapping)
RequestNotReplayable        httpx.RequestError                 the last try's status
==========================  =================================  =====================================

By default an httpx caller does not get these raised but answered
(:mod:`meshlib.transport.http_answers`): :func:`envoy_response` builds the answer
an Envoy sidecar gives instead (status, its headers, its body), and the twin is
kept with it. With ``raise_mesh_errors=True`` the twin is raised; for rate
limits and injected aborts it carries that answer as ``.response``, so
``except httpx.HTTPStatusError as e: e.response.status_code`` works as after
``raise_for_status()``.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import grpc
import httpx

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

E = TypeVar("E", bound=BaseException)

# --- status mappings ----------------------------------------------------------------

_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}

# gRPC's HTTP-to-gRPC mapping (doc/http-grpc-status-mapping.md).
_HTTP_TO_GRPC: Final = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}

# Envoy's Grpc::Utility::grpcToHttpStatus.
_GRPC_TO_HTTP: Final = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip

# The bodies Envoy's local replies carry.
_ENVOY_BODIES: Final[dict[type[ResilienceError], bytes]] = {
    PerTryTimeoutError: b"upstream request timeout",
    DeadlineExceeded: b"upstream request timeout",
    CircuitBreakerOverflow: b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: overflow",
    CircuitOpenError: b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: overflow",
    RateLimitedError: b"local_rate_limited",
    InjectedFaultError: b"fault filter abort",
}


def grpc_status_of(error: ResilienceError) -> grpc.StatusCode:
    """The status a gRPC caller sees for ``error``."""
    code = error.grpc_status
    if code is None and error.http_status is not None:
        code = _HTTP_TO_GRPC.get(error.http_status, 2)
    if code is None:
        cause = error.__cause__
        if isinstance(cause, grpc.RpcError) and isinstance(cause, grpc.Call):
            return cause.code()
        return grpc.StatusCode.UNAVAILABLE
    return _CODES.get(code, grpc.StatusCode.UNKNOWN)


def http_status_of(error: ResilienceError) -> int:
    """The HTTP status an Envoy sidecar would answer ``error`` with."""
    if error.http_status is not None:
        return error.http_status
    if error.grpc_status is not None:
        return _GRPC_TO_HTTP.get(error.grpc_status, 500)
    return 503


def _body(error: ResilienceError) -> bytes:
    for cls in type(error).__mro__:
        body = _ENVOY_BODIES.get(cls)
        if body is not None:
            return body
    return str(error).encode()


#: The headers Envoy puts on every local reply (besides ``date`` and ``content-length``).
SIDECAR_HEADERS: Final[tuple[tuple[str, str], ...]] = (("server", "envoy"),)


def envoy_response(error: ResilienceError, request: httpx.Request) -> httpx.Response:
    """The local reply an Envoy sidecar sends instead of ``error`` (status, headers, body)."""
    headers: list[tuple[str, str]] = [("content-type", "text/plain"), *SIDECAR_HEADERS]
    if isinstance(error, (CircuitBreakerOverflow, CircuitOpenError)):
        headers.append(("x-envoy-overloaded", "true"))
    if isinstance(error, RateLimitedError):
        headers.extend(error.response_headers)
    if isinstance(error, InjectedFaultError) and error.grpc_status is not None:
        headers.append(("grpc-status", str(error.grpc_status)))
        headers.append(("grpc-message", str(error)))
    return httpx.Response(
        http_status_of(error), headers=headers, content=_body(error), request=request
    )


# --- httpx twins --------------------------------------------------------------------


class MeshResilienceError(ResilienceError, httpx.RequestError):
    """A resilience error raised through httpx (base of the request-side twins)."""


class MeshDeadlineExceeded(DeadlineExceeded, httpx.TimeoutException):
    """The call's deadline (route timeout, caller's deadline) passed."""


class MeshPerTryTimeoutError(PerTryTimeoutError, MeshDeadlineExceeded):
    """One try exceeded the route's per-try timeout and no retry was left."""


class MeshCircuitBreakerOverflow(CircuitBreakerOverflow, httpx.ConnectError):
    """A cluster threshold was full; the request was not sent."""


class MeshCircuitOpenError(CircuitOpenError, httpx.ConnectError):
    """The cluster's failure-rate breaker is open; the request was not sent."""


class MeshRequestNotReplayable(RequestNotReplayable, httpx.RequestError):
    """A retry was due but the request body was streamed and cannot be resent."""


class MeshRateLimitedError(RateLimitedError, httpx.HTTPStatusError):
    """The local rate limit refused the request; ``.response`` is the 429 (or configured) answer."""


class MeshInjectedFaultError(InjectedFaultError, httpx.HTTPStatusError):
    """Fault injection aborted the request; ``.response`` carries the injected status."""


_HTTPX_TWINS: Final[dict[type[ResilienceError], type[ResilienceError]]] = {
    PerTryTimeoutError: MeshPerTryTimeoutError,
    DeadlineExceeded: MeshDeadlineExceeded,
    CircuitBreakerOverflow: MeshCircuitBreakerOverflow,
    CircuitOpenError: MeshCircuitOpenError,
    RequestNotReplayable: MeshRequestNotReplayable,
    RateLimitedError: MeshRateLimitedError,
    InjectedFaultError: MeshInjectedFaultError,
    ResilienceError: MeshResilienceError,
}


def _clone(cls: type[E], error: BaseException) -> E:
    twin = cls.__new__(cls)
    twin.__dict__.update(error.__dict__)
    twin.args = error.args
    twin.__cause__ = error.__cause__
    twin.__context__ = error.__context__
    twin.__suppress_context__ = error.__suppress_context__
    twin.__traceback__ = error.__traceback__
    return twin


def _twin_class(error: ResilienceError, table: dict[type[ResilienceError], type[Any]]) -> Any:
    for cls in type(error).__mro__:
        twin = table.get(cls)
        if twin is not None:
            return twin
    raise TypeError(f"no twin for {type(error).__name__}")  # unreachable: ResilienceError maps


def resilience_error_as_httpx(error: ResilienceError, request: httpx.Request) -> ResilienceError:
    """The httpx-flavoured twin of ``error`` (same message and fields), bound to ``request``."""
    if isinstance(error, httpx.HTTPError):
        return error
    twin: ResilienceError = _clone(_twin_class(error, _HTTPX_TWINS), error)
    if isinstance(twin, httpx.HTTPStatusError):
        twin.request = request
        twin.response = envoy_response(error, request)
    else:
        assert isinstance(twin, httpx.HTTPError)
        twin.request = request
    return twin


# --- gRPC twins ---------------------------------------------------------------------


class RpcStatusMixin(grpc.RpcError, grpc.Call):
    """Makes a resilience error a sync ``grpc.RpcError`` + ``grpc.Call`` with a status."""

    _status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return f"meshlib: {self.args[0] if self.args else type(self).__name__}"

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _sync_twin(base: type[ResilienceError]) -> type[Any]:
    return type(f"Rpc{base.__name__}", (base, RpcStatusMixin), {"__doc__": base.__doc__})


def _aio_twin(base: type[ResilienceError]) -> type[Any]:
    return type(f"AioRpc{base.__name__}", (base, grpc.aio.AioRpcError), {"__doc__": base.__doc__})


_RESILIENCE_TYPES: Final = (
    PerTryTimeoutError,
    DeadlineExceeded,
    CircuitBreakerOverflow,
    CircuitOpenError,
    RequestNotReplayable,
    RateLimitedError,
    InjectedFaultError,
    ResilienceError,
)
_SYNC_TWINS: Final[dict[type[ResilienceError], type[Any]]] = {
    cls: _sync_twin(cls) for cls in _RESILIENCE_TYPES
}
_AIO_TWINS: Final[dict[type[ResilienceError], type[Any]]] = {
    cls: _aio_twin(cls) for cls in _RESILIENCE_TYPES
}


def as_rpc_error(error: ResilienceError) -> ResilienceError:
    """The sync gRPC twin: a ``grpc.RpcError`` (and ``grpc.Call``) with the matching status."""
    if isinstance(error, grpc.RpcError):
        return error
    twin: Any = _clone(_twin_class(error, _SYNC_TWINS), error)
    twin._status = grpc_status_of(error)
    result: ResilienceError = twin
    return result


def as_aio_rpc_error(error: ResilienceError) -> ResilienceError:
    """The aio twin: a ``grpc.aio.AioRpcError`` with the matching status."""
    if isinstance(error, grpc.RpcError):
        return error
    twin: Any = _clone(_twin_class(error, _AIO_TWINS), error)
    grpc.aio.AioRpcError.__init__(
        twin,
        grpc_status_of(error),
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        f"meshlib: {error}",
        None,
    )
    twin.args = error.args
    result: ResilienceError = twin
    return result
