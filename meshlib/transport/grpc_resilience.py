"""The gRPC side of resilience: how a try's answer or error reads, and its timeout.

- :func:`describe_value` / :func:`describe_error`: a unary answer is OK; a
  ``grpc.RpcError`` (sync or aio) is its status code, with its trailing
  metadata as headers (for ``retriable-headers`` and Retry-After style
  back-off). UNAVAILABLE with grpcio's connect-failure details reads as
  ``connect-failure`` too (the request never reached the server), so Envoy's
  connection conditions work for gRPC as well. meshlib's own errors (routing,
  resilience) are never retried.
- :func:`timed_out`: a DEADLINE_EXCEEDED that ended a try's per-try budget
  becomes :class:`~meshlib.errors.PerTryTimeoutError`, which the retry
  conditions read as ``per-try-timeout``.

What each try sends (its ``timeout=``, ``grpc-previous-rpc-attempts``) is the
gRPC adapter's (:mod:`meshlib.transport.grpc_try`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc

from meshlib.errors import PerTryTimeoutError, ResilienceError, RoutingError
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.retry import Attempt

OK_OUTCOME: Final = Outcome(grpc_status=0)
#: gRFC A6: how many tries of this call went before (sent from try 2 on).
PREVIOUS_ATTEMPTS_KEY: Final = "grpc-previous-rpc-attempts"
# grpcio's details when no connection could be made (the request was never sent).
_CONNECT_FAILURE_HINTS: Final = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "connections to all backends failing",
)


def describe_value(_value: object) -> Outcome:
    """A unary answer: status OK."""
    return OK_OUTCOME


def _trailers(error: Any) -> Mapping[str, str]:
    try:
        metadata = error.trailing_metadata() or ()
    except Exception:  # a call without metadata (e.g. meshlib's own errors)
        return {}
    return {
        str(key).lower(): value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for key, value in metadata
    }


def describe_error(error: BaseException) -> Outcome:
    """An exception from one try as the retry conditions see it."""
    if isinstance(error, PerTryTimeoutError):
        return Outcome(failure=FailureKind.TIMEOUT, error=error)
    if isinstance(error, (ResilienceError, RoutingError)):
        return Outcome(failure=FailureKind.OTHER, error=error)
    code_of = getattr(error, "code", None)
    if isinstance(error, grpc.RpcError) and callable(code_of):
        code = code_of()
        status = int(code.value[0]) if isinstance(code, grpc.StatusCode) else 2
        failure = None
        if code is grpc.StatusCode.UNAVAILABLE:
            details = str(getattr(error, "details", lambda: "")() or "").lower()
            if any(hint in details for hint in _CONNECT_FAILURE_HINTS):
                failure = FailureKind.CONNECT_FAILURE
        return Outcome(grpc_status=status, failure=failure, headers=_trailers(error), error=error)
    return Outcome(failure=FailureKind.OTHER, error=error)


def timed_out(
    error: BaseException,
    attempt: Attempt,
    per_try_s: float | None,
) -> BaseException:
    """DEADLINE_EXCEEDED at the end of a per-try budget, as :class:`PerTryTimeoutError`."""
    code_of = getattr(error, "code", None)
    if per_try_s is None or not attempt.per_try or not callable(code_of):
        return error  # the call's own deadline ended it: grpc's DEADLINE_EXCEEDED stands
    if code_of() is not grpc.StatusCode.DEADLINE_EXCEEDED:
        return error
    deadline = attempt.deadline
    if deadline is None or deadline.remaining() > 0.001:
        return error
    timeout = PerTryTimeoutError(
        f"try {attempt.number} exceeded the per-try timeout of {per_try_s}s", timeout_s=per_try_s
    )
    timeout.__cause__ = error
    return timeout
