"""What an httpx caller gets when the mesh itself ends a request: the sidecar's answer.

Behind an Envoy sidecar an app never sees an exception for what the proxy decides:
it gets a response, and fault injection exists to exercise exactly that handling.
So by default an outcome Envoy answers with a response is that response here
(status, ``content-type: text/plain``, ``server: envoy``, Envoy's body and headers):

=====================================  ====  =============================================
outcome (the typed error)              code  body / headers
=====================================  ====  =============================================
injected abort (InjectedFaultError)    as    ``fault filter abort``
                                       set   (+ ``grpc-status`` for a gRPC-only abort)
route / per-try timeout                504   ``upstream request timeout``
(DeadlineExceeded, PerTryTimeoutError)
no endpoint to pick                    503   ``no healthy upstream``
(NoHealthyEndpointError)
connect failure on the last try        503   ``upstream connect error or disconnect/reset
(httpx.ConnectError / ConnectTimeout)        before headers. reset reason: remote
                                             connection failure`` (``connection timeout``;
                                             after retries ``... retried and the latest
                                             reset reason: ...``)
reset before headers on the last try   503   ``... reset reason: connection termination``
(httpx.ReadError, RemoteProtocolError)
threshold full, breaker open           503   ``... reset reason: overflow``,
(CircuitBreakerOverflow,                     ``x-envoy-overloaded: true``
CircuitOpenError)
local rate limit (RateLimitedError)    429   ``local_rate_limited`` (+ the limit's headers)
no route (NoRouteError)                404   empty, no content-type
=====================================  ====  =============================================

The exception is kept in ``response.extensions["meshlib.error"]``
(:data:`MESH_ERROR_EXTENSION`): the same object ``raise_mesh_errors=True`` (on
``Mesh.http_client`` and the transports) raises instead, for code that prefers
today's exceptions. Everything else (the service's config not there, a streamed
body that cannot be replayed, the caller's own httpx timeouts, bugs) is raised as it
is either way. :func:`mesh_answer` is the one place this is decided, called where
a mesh request ends: the compiled first try and the general retry runner (sync and
async), and the route match.
"""

from __future__ import annotations

from typing import Final

import httpx

from meshlib.errors import (
    NoHealthyEndpointError,
    NoRouteError,
    RequestNotReplayable,
    ResilienceError,
    ResilienceValueError,
    RoutingError,
)
from meshlib.resilience.retry import Attempt
from meshlib.transport.errors import routing_error_as_httpx as as_httpx_routing_error
from meshlib.transport.resilience_errors import SIDECAR_HEADERS, envoy_response
from meshlib.transport.resilience_errors import (
    resilience_error_as_httpx as as_httpx_resilience_error,
)

#: The key of ``httpx.Response.extensions`` that holds the typed error of a mesh answer.
MESH_ERROR_EXTENSION: Final = "meshlib.error"

_BEFORE_HEADERS: Final = "upstream connect error or disconnect/reset before headers. reset reason: "
_RETRIED_BEFORE_HEADERS: Final = (
    "upstream connect error or disconnect/reset before headers. retried and the latest reset "
    "reason: "
)
_RETRIED: Final = "_meshlib_retried"  # set on a transport error of try 2 or later
_NOT_ANSWERED: Final = (RequestNotReplayable, ResilienceValueError)
_CONNECT_TIMEOUTS: Final = (httpx.ConnectTimeout,)
_CONNECT_FAILURES: Final = (httpx.ConnectError, ConnectionRefusedError)
_RESETS: Final = (
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def typed_error(error: BaseException, request: httpx.Request) -> BaseException:
    """The exception the httpx caller sees for ``error``: meshlib's errors as their
    httpx twins (:mod:`meshlib.transport.errors`, :mod:`.resilience_errors`), others as they are."""
    if isinstance(error, ResilienceError):
        return as_httpx_resilience_error(error, request)
    if isinstance(error, RoutingError):
        return as_httpx_routing_error(error, request)
    return error


def sidecar_answer(error: BaseException, request: httpx.Request) -> httpx.Response | None:
    """The response an Envoy sidecar sends instead of ``error`` (the typed error in its
    extensions), or None when a sidecar would not answer it."""
    if isinstance(error, ResilienceError):
        if isinstance(error, _NOT_ANSWERED):
            return None
        response = envoy_response(error, request)
    elif isinstance(error, RoutingError):
        if isinstance(error, NoRouteError):
            headers = [*SIDECAR_HEADERS, ("content-length", "0")]
            response = httpx.Response(404, headers=headers, request=request)
        elif isinstance(error, NoHealthyEndpointError):
            response = _text(503, "no healthy upstream", request)
        else:
            return None  # the service's config is missing: no listener, nothing answers
    elif isinstance(error, _CONNECT_TIMEOUTS):
        response = _reset_before_headers("connection timeout", error, request)
    elif isinstance(error, _CONNECT_FAILURES):
        response = _reset_before_headers("remote connection failure", error, request)
    elif isinstance(error, _RESETS):
        response = _reset_before_headers("connection termination", error, request)
    else:
        return None
    response.extensions[MESH_ERROR_EXTENSION] = typed_error(error, request)
    return response


def mesh_answer(error: Exception, request: httpx.Request, raise_errors: bool) -> httpx.Response:
    """Where a mesh request ended in ``error``: the sidecar's answer, or (when none
    applies, or ``raise_errors``) the typed error raised. Call it in the ``except``
    block that caught ``error``."""
    if not raise_errors:
        answer = sidecar_answer(error, request)
        if answer is not None:
            return answer
    typed = typed_error(error, request)
    if typed is error:
        raise error
    raise typed from error


def note_retried(error: BaseException, attempt: Attempt) -> None:
    """Remember on a try's transport error that the request had tries before it (Envoy's
    answer then says ``retried and the latest reset reason``)."""
    if attempt.number > 1:
        setattr(error, _RETRIED, True)


def _reset_before_headers(
    reason: str, error: BaseException, request: httpx.Request
) -> httpx.Response:
    retried = getattr(error, _RETRIED, False)
    body = (_RETRIED_BEFORE_HEADERS if retried else _BEFORE_HEADERS) + reason
    return _text(503, body, request)


def _text(status: int, body: str, request: httpx.Request) -> httpx.Response:
    headers = [("content-type", "text/plain"), *SIDECAR_HEADERS]
    return httpx.Response(status, headers=headers, content=body.encode(), request=request)
