"""ASGI middleware: run each HTTP request under the deadline its caller sent.

Reads ``x-meshlib-deadline-ms`` (what meshlib's httpx transport sends: the
milliseconds left), ``grpc-timeout`` and Envoy's ``x-envoy-expected-rq-timeout-ms``
(the earliest wins) and runs the app inside :func:`~meshlib.resilience.deadline_scope`,
so mesh calls the handler makes share that budget and pass on what is left.

- A request whose deadline already passed is answered 504 without running the app.
- A malformed deadline header is answered 400 naming the header.
- A resilience error escaping the app before it started its response (a
  downstream deadline, an open breaker, a rate limit...) is answered as an
  Envoy sidecar would (504, 503 + ``x-envoy-overloaded``, 429, ...).
- With ``rate_limit=TokenBucket(...)`` the server also enforces a local rate
  limit (429, or the bucket's status) before the app runs.

    app = meshlib.DeadlineMiddleware(app)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from meshlib.errors import (
    CircuitBreakerOverflow,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    ResilienceError,
    ResilienceValueError,
)
from meshlib.resilience.deadline import (
    DEADLINE_HEADER,
    ENVOY_TIMEOUT_HEADER,
    GRPC_TIMEOUT_HEADER,
    Deadline,
    deadline_from_headers,
    deadline_scope,
)
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.transport.resilience_errors import http_status_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_DEADLINE_HEADERS = frozenset(
    name.encode() for name in (DEADLINE_HEADER, ENVOY_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER)
)


def _incoming_deadline(scope: Scope) -> Deadline | None:
    """The deadline the request's headers carry (only those headers are decoded)."""
    found = [
        (name.decode("latin-1"), value)
        for name, value in scope.get("headers") or ()
        if name.lower() in _DEADLINE_HEADERS
    ]
    return deadline_from_headers(found) if found else None


def _response_headers(error: ResilienceError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if isinstance(error, (CircuitBreakerOverflow, CircuitOpenError)):
        headers.append((b"x-envoy-overloaded", b"true"))
    if isinstance(error, RateLimitedError):
        headers.extend(
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in error.response_headers
        )
    return headers


async def _answer(send: Send, status: int, body: str, headers: list[tuple[bytes, bytes]]) -> None:
    payload = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class DeadlineMiddleware:
    """Puts the caller's deadline (and an optional local rate limit) around an ASGI app."""

    def __init__(self, app: ASGIApp, *, rate_limit: TokenBucket | None = None) -> None:
        self.app = app
        self.rate_limit = rate_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        plain = [(b"content-type", b"text/plain; charset=utf-8")]
        if self.rate_limit is not None and not self.rate_limit.try_acquire():
            error = self.rate_limit.rejection()
            await _answer(
                send, http_status_of(error), "local_rate_limited", _response_headers(error)
            )
            return
        try:
            deadline = _incoming_deadline(scope)
        except ResilienceValueError as exc:
            await _answer(send, 400, f"meshlib: {exc}", plain)
            return
        if deadline is not None and deadline.expired():
            await _answer(send, 504, "meshlib: deadline already exceeded", plain)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        with deadline_scope(deadline=deadline):
            try:
                await self.app(scope, receive, tracking_send)
            except ResilienceError as error:
                if started:
                    raise
                status = 504 if isinstance(error, DeadlineExceeded) else http_status_of(error)
                await _answer(send, status, f"meshlib: {error}", _response_headers(error))
