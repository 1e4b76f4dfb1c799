"""The gRPC side of resilience: how a try's answer or error reads, and its timeout.

- :func:`describe_value` / :func:`describe_error`: a unary answer is OK; a
  ``grpc.RpcError`` (sync or aio) is its status code, with its trailing
  metadata as headers (for ``retriable-headers`` and Retry-After style
  back-off). UNAVAILABLE with grpcio's connect-failure details reads as
  ``connect-failure`` too (the request never reached the server), so Envoy's
  connection conditions work for gRPC as well. meshlib's own errors (routing,
  resilience) are never retried.
- :func:`try_timeout`: the ``timeout=`` to give grpcio for one try (what the
  try has left, or the caller's own timeout when there is no budget).
- :func:`timed_out`: a DEADLINE_EXCEEDED that ended a try's per-try budget
  becomes :class:`~meshlib.errors.PerTryTimeoutError`, which the retry
  conditions read as ``per-try-timeout``.
- :func:`call_timeout`, :func:`try_options`, :func:`single_deadline`,
  :func:`bounded_options`, :func:`call_headers`: what the channels hand to the resilience driver and
  to grpcio per try (the deadline travels as grpcio's ``timeout=``, i.e.
  ``grpc-timeout``; a retry or hedge carries ``grpc-previous-rpc-attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc

from meshlib.errors import DeadlineExceeded, PerTryTimeoutError, ResilienceError, RoutingError
from meshlib.resilience.call import call_deadline
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.deadline import Deadline
from meshlib.resilience.retry import Attempt
from meshlib.resilience.route_resilience import RouteResilience
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_routing import Metadata, metadata_headers

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


def try_timeout(attempt: Attempt, caller_timeout: float | None) -> float | None:
    """The ``timeout=`` for one try: its budget (which already includes the caller's)."""
    remaining = attempt.timeout_s
    if remaining is None:
        return caller_timeout
    return remaining if caller_timeout is None else min(remaining, caller_timeout)


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


_NO_HEADERS: Final[Mapping[str, str]] = {}


def call_headers(
    route: RouteResilience, cluster: str, metadata: Metadata | None
) -> Mapping[str, str]:
    """The call's metadata as headers, built only when the route's resilience reads them."""
    return metadata_headers(metadata) if route.needs_headers(cluster) else _NO_HEADERS


def call_timeout(route: RouteResilience, caller_timeout: float | None) -> float | None:
    """gRFC A31: the route's max (grpc_timeout_header_max, ...) caps the caller's timeout."""
    cap = route.timeouts.grpc_max_timeout_s
    if cap is None:
        return caller_timeout
    return cap if caller_timeout is None else min(cap, caller_timeout)


def per_try_timeout(route: RouteResilience) -> float | None:
    return route.retry.policy.per_try_timeout_s if route.retry is not None else None


def try_options(options: CallOptions, attempt: Attempt) -> CallOptions:
    """The call's options for one try (every try of every gRPC unary call,
    sync and aio, fast path or not, is sent with these): ``timeout`` = what the try
    has left, and from try 2 on (retry or hedge) gRFC A6's ``grpc-previous-rpc-attempts``.

    Raises :class:`~meshlib.errors.DeadlineExceeded` when nothing is left (a fault
    delay or a back-off spent it): expired work is not started.
    """
    if attempt.number > 1:
        previous = (PREVIOUS_ATTEMPTS_KEY, str(attempt.number - 1))
        options = options._replace(metadata=(*(options.metadata or ()), previous))
    deadline = attempt.deadline
    if deadline is None:
        return options
    remaining = deadline.remaining()
    if remaining <= 0:
        raise DeadlineExceeded(
            f"deadline exceeded before try {attempt.number} started", timeout_s=0.0
        )
    return options._replace(timeout=remaining)


def single_deadline(route: RouteResilience, options: CallOptions, name: str) -> Deadline | None:
    """A single-try (streaming) call's deadline: the caller's, capped by the route (its
    fault delay counts in it). Raises :class:`~meshlib.errors.DeadlineExceeded` when it
    has already passed."""
    return call_deadline(call_timeout(route, options.timeout), name)


def bounded_options(options: CallOptions, deadline: Deadline | None) -> CallOptions:
    """A single-try call's options: ``timeout`` = what ``deadline`` has left now (after
    the fault stages)."""
    if deadline is None:
        return options
    return options._replace(timeout=deadline.remaining())
