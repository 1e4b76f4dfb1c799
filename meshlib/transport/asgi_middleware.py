"""ASGI middleware: the mesh's server policies around an ASGI app.

Each HTTP request meets the server policy list (:mod:`meshlib.serving`, the
same list the gRPC interceptors apply; by default the caller's deadline, and a
local rate limit when one is given): a denial is answered with its status, the
app runs inside the wraps. The deadline is read from ``x-meshlib-deadline-ms``
(what meshlib's httpx transport sends: the milliseconds left), ``grpc-timeout``
and Envoy's ``x-envoy-expected-rq-timeout-ms`` (the earliest wins):

- a request whose deadline already passed is answered 504 without running the app;
- a malformed deadline header is answered 400 naming the header;
- when the deadline passes while the app runs, the app is cancelled and the
  request answered 504 (a response already under way is aborted instead), as a
  gRPC server ends a call whose deadline passed;
- a resilience error escaping the app before it started its response (a
  downstream deadline, an open breaker, a rate limit...) is answered as an
  Envoy sidecar would (504, 503 + ``x-envoy-overloaded``, 429, ...);
- with ``rate_limit=TokenBucket(...)`` the server also enforces a local rate
  limit (429, or the bucket's status) before the app runs;
- with ``mesh=``, the workload's inbound listener authorizes each request (RBAC
  403 ``RBAC: access denied``, JWT 401); ``port=`` (and ``address=``) start its watch
  before the first request, else the first request's local address does.

Either way of adding it works, also with an error middleware inside the app
(Starlette's and FastAPI's ``ServerErrorMiddleware`` answers 500 and then re-raises:
a 5xx answer is held back until the app ends, so the error's own status replaces it):

    app = meshlib.asgi.MeshMiddleware(app, mesh=mesh)
    app.add_middleware(meshlib.asgi.MeshMiddleware, mesh=mesh)   # Starlette / FastAPI

``DeadlineMiddleware`` is the same with the default list (kept for older code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

from meshlib.errors import (
    CircuitBreakerOverflow,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    ResilienceError,
)
from meshlib.resilience.deadline import (
    DEADLINE_HEADER,
    ENVOY_TIMEOUT_HEADER,
    GRPC_TIMEOUT_HEADER,
    Deadline,
    TryTimer,
    current_deadline,
    deadline_from_headers,
)
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.security.peer import asgi_peer_tls, asgi_sni
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import Deny, ServerPolicy, admit
from meshlib.serving.inbound_policy import InboundPolicy
from meshlib.serving.inbound_rules import headers_after
from meshlib.serving.stack import policy_list
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


_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _local(scope: Scope) -> tuple[str, int] | None:
    server = scope.get("server")
    if not server or len(server) < 2 or server[1] is None:
        return None
    return str(server[0]), int(server[1])


def _incoming(scope: Scope) -> IncomingCall:
    query = scope.get("query_string") or b""
    return IncomingCall(
        protocol="http",
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        peer=_peer(scope),
        headers=scope.get("headers") or (),
        deadline=lambda: _incoming_deadline(scope),
        peer_tls=lambda: asgi_peer_tls(scope),
        local=_local(scope),
        query=query.decode("latin-1") if isinstance(query, bytes) else str(query),
        sni=asgi_sni(scope),
        secure=_secure(scope),
    )


def _secure(scope: Scope) -> bool | None:
    """Whether the connection is TLS: the scheme, or the ASGI TLS extension."""
    extensions = scope.get("extensions")
    if scope.get("scheme") in ("https", "wss") or (extensions and "tls" in extensions):
        return True
    return False if scope.get("scheme") in ("http", "ws") else None


def _denial_headers(denial: Deny) -> list[tuple[bytes, bytes]]:
    return [_PLAIN, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in denial.headers)]


def _response_headers(error: ResilienceError) -> list[tuple[bytes, bytes]]:
    headers = [_PLAIN]
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


#: A held-back 5xx answer larger than this is sent on (an error page is small).
_HOLD_LIMIT = 64 * 1024


class _HoldingSend:
    """The app's ``send``: passes messages on, except a 5xx answer, held until the
    app ends so that the resilience error behind it can still replace it."""

    __slots__ = ("_held", "_held_bytes", "_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._held: list[Message] | None = None
        self._held_bytes = 0
        self.started = False  # whether a response start went to the server

    async def __call__(self, message: Message) -> None:
        if self._held is not None:
            self._held.append(message)
            self._held_bytes += len(message.get("body", b""))
            if self._held_bytes > _HOLD_LIMIT:
                await self.flush()
        elif message["type"] == "http.response.start" and message.get("status", 200) >= 500:
            self._held = [message]
        else:
            self.started = self.started or message["type"] == "http.response.start"
            await self._send(message)

    async def flush(self) -> None:
        """Send what was held back (the app ended without a resilience error)."""
        held, self._held = self._held, None
        if held:
            self.started = True
            for message in held:
                await self._send(message)

    def drop(self) -> bool:
        """Forget a held answer; whether the request can still be answered."""
        self._held = None
        return not self.started


class PolicySource(Protocol):
    """What the middleware needs of a mesh: its server policy list."""

    def server_policies(self) -> tuple[ServerPolicy, ...]: ...


class MeshMiddleware:
    """The server policies around an ASGI app: ``mesh``'s (``meshlib.Mesh``), the
    ``policies`` given, or the default list (with ``rate_limit`` if given)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        mesh: PolicySource | None = None,
        policies: Sequence[ServerPolicy] | None = None,
        rate_limit: TokenBucket | None = None,
        port: int | None = None,
        address: str = "0.0.0.0",
    ) -> None:
        self.app = app
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise ValueError(f"MeshMiddleware: port must be the app's port, 1..65535, got {port!r}")
        if mesh is not None:
            if policies is not None or rate_limit is not None:
                raise ValueError("give mesh= alone: its server policies are the list applied")
            self.policies = mesh.server_policies()
        else:
            self.policies = policy_list(policies, rate_limit)
        if port is not None:  # watch this port's inbound listener before the first request
            for policy in self.policies:
                if isinstance(policy, InboundPolicy):
                    policy.serve(address, port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        call = _incoming(scope)
        admitted = admit(self.policies, call)
        if isinstance(admitted, Deny):
            await _answer(send, admitted.http_status, admitted.http_body, _denial_headers(admitted))
            return
        if call.header_edits is not None:  # e.g. a JWT not forwarded, its payload header
            scope = {**scope, "headers": headers_after(list(scope["headers"]), call.header_edits)}
        holding = _HoldingSend(send)
        with admitted.scope():
            try:
                await self._run(scope, receive, holding, current_deadline())
            except ResilienceError as error:
                if not holding.drop():
                    raise
                status = 504 if isinstance(error, DeadlineExceeded) else http_status_of(error)
                await _answer(send, status, f"meshlib: {error}", _response_headers(error))
            except BaseException:
                await holding.flush()
                raise
            else:
                await holding.flush()

    async def _run(
        self, scope: Scope, receive: Receive, send: _HoldingSend, deadline: Deadline | None
    ) -> None:
        """The app, cancelled when ``deadline`` passes (then :class:`DeadlineExceeded`)."""
        if deadline is None:
            await self.app(scope, receive, send)
            return
        timer = TryTimer(deadline.remaining())
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if timer.fired():
                raise DeadlineExceeded(
                    "deadline exceeded while the handler ran", timeout_s=0.0
                ) from None
            raise
        else:
            timer.fired()  # an app that swallowed the timer's cancel: take it back
        finally:
            timer.cancel()


class DeadlineMiddleware(MeshMiddleware):
    """The default policy list (the caller's deadline; ``rate_limit=`` adds a local
    rate limit): kept for code written before the policy list."""

    def __init__(self, app: ASGIApp, *, rate_limit: TokenBucket | None = None) -> None:
        super().__init__(app, rate_limit=rate_limit)
