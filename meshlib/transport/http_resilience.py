"""The httpx side of resilience: how a try's answer or error reads, and how a try is bounded.

- :func:`describe_response` / :func:`describe_error` turn an httpx answer or
  exception into the :class:`~meshlib.resilience.Outcome` the retry conditions
  read (connect errors are ``connect-failure``; a dropped connection or a
  protocol error mid-request is ``reset``; httpx read / write timeouts of a
  try are ``per-try-timeout``).
- :func:`bound_request` gives one try its budget: httpx's per-operation
  timeouts capped by what the try has left, the per-try idle timeout as the
  read timeout, and the deadline header ``x-meshlib-deadline-ms`` for the
  next hop. The caller's request is never modified (a copy is returned).
- :func:`is_replayable`: only a request whose body is in memory can be retried.
- :func:`timed_out`: an httpx timeout that ended a try's budget, as meshlib's
  :class:`~meshlib.errors.PerTryTimeoutError` / :class:`~meshlib.errors.DeadlineExceeded`.
"""

from __future__ import annotations

import math
from typing import Final

import httpx

from meshlib.errors import DeadlineExceeded, PerTryTimeoutError, ResilienceError, RoutingError
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.deadline import DEADLINE_HEADER
from meshlib.resilience.retry import Attempt
from meshlib.transport._httpx_internals import copy_request, header_set

_NO_TIMEOUTS: Final[dict[str, float | None]] = {}


def describe_response(response: httpx.Response) -> Outcome:
    """An answer as the retry conditions see it (status and response headers)."""
    return Outcome(status=response.status_code, headers=response.headers)


def describe_error(error: BaseException) -> Outcome:
    """An exception from one try as the retry conditions see it."""
    if isinstance(error, PerTryTimeoutError):
        return Outcome(failure=FailureKind.TIMEOUT, error=error)
    if isinstance(error, (ResilienceError, RoutingError)):
        return Outcome(failure=FailureKind.OTHER, error=error)
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Outcome(failure=FailureKind.CONNECT_FAILURE, error=error)
    if isinstance(error, httpx.TimeoutException):
        return Outcome(failure=FailureKind.TIMEOUT, error=error)
    if isinstance(error, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        return Outcome(failure=FailureKind.RESET, error=error)
    if isinstance(error, ConnectionRefusedError):
        return Outcome(failure=FailureKind.CONNECT_FAILURE, error=error)
    if isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return Outcome(failure=FailureKind.RESET, error=error)
    return Outcome(failure=FailureKind.OTHER, error=error)


def is_replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again (in memory, not a one-shot stream)."""
    return isinstance(request.stream, httpx.ByteStream)


def bound_request(
    request: httpx.Request,
    remaining: float | None,
    idle_timeout_s: float | None,
    connect_timeout_s: float | None = None,
) -> httpx.Request:
    """The request for one try: timeouts capped by the try's budget ``remaining``
    (> 0; None: no budget) and the idle timeout, the deadline header set;
    ``connect_timeout_s`` also caps the connect phase (the cluster's connect timeout).
    Returns ``request`` itself when there is nothing to bound."""
    if remaining is None and idle_timeout_s is None and connect_timeout_s is None:
        return request
    outgoing = copy_request(request)
    extensions = request.extensions
    current = extensions.get("timeout") or _NO_TIMEOUTS
    connect, read = current.get("connect"), current.get("read")
    write, pool = current.get("write"), current.get("pool")
    if remaining is not None:
        connect = remaining if connect is None or connect > remaining else connect
        read = remaining if read is None or read > remaining else read
        write = remaining if write is None or write > remaining else write
        pool = remaining if pool is None or pool > remaining else pool
    if idle_timeout_s is not None and (read is None or read > idle_timeout_s):
        read = idle_timeout_s
    if connect_timeout_s is not None and (connect is None or connect > connect_timeout_s):
        connect = connect_timeout_s
    timeouts = {"connect": connect, "read": read, "write": write, "pool": pool}
    outgoing.extensions = {**extensions, "timeout": timeouts}
    if remaining is not None:
        outgoing.headers = with_deadline(request.headers, str(math.ceil(remaining * 1000)))
    return outgoing


_DEADLINE_NAME: Final = DEADLINE_HEADER.encode()


def with_deadline(headers: httpx.Headers, milliseconds: str) -> httpx.Headers:
    """A copy of ``headers`` with the deadline header set to ``milliseconds``."""
    return header_set(headers, _DEADLINE_NAME, milliseconds)


def timed_out(
    error: httpx.TimeoutException,
    attempt: Attempt,
    per_try_s: float | None,
) -> Exception:
    """An httpx timeout of a bounded try, as meshlib's deadline error when the budget ran out.

    When the per-try timeout ended the try it is :class:`PerTryTimeoutError` (a
    :class:`DeadlineExceeded`), when the call's deadline did :class:`DeadlineExceeded`;
    an httpx timeout the caller set tighter than the budget stays as it is.
    """
    deadline = attempt.deadline
    if deadline is None or deadline.remaining() > 0.001:
        return error
    if attempt.per_try and per_try_s is not None:
        return PerTryTimeoutError(
            f"try {attempt.number} exceeded the per-try timeout of {per_try_s}s",
            timeout_s=per_try_s,
        )
    return DeadlineExceeded(f"deadline exceeded during try {attempt.number}")
