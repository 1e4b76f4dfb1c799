"""gRPC server interceptors: the mesh's server policies around every handler.

Each call meets the server policy list (:mod:`meshlib.serving`; by default the
caller's deadline, and a local rate limit when one is given) before its handler
runs: a denial ends the call with its status, the handler runs inside the wraps
(so it runs under the caller's deadline: every mesh call it makes shares that
budget). A resilience error escaping the handler (a downstream deadline, an open
breaker, ...) ends the call with its matching status instead of UNKNOWN.

    server = mesh.grpc_server(pool)            # the mesh's policies
    server = grpc.server(pool, interceptors=[meshlib.MeshServerInterceptor()])
    server = grpc.aio.server(interceptors=[meshlib.AioMeshServerInterceptor()])

``DeadlineServerInterceptor`` / ``AioDeadlineServerInterceptor`` are the same
with the default list (their ``rate_limit=`` adds a local rate limit).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import unquote

import grpc
import grpc.aio

from meshlib.errors import ResilienceError
from meshlib.resilience.deadline import Deadline
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.security.peer import grpc_peer_tls
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import Admitted, Deny, ServerPolicy, admit
from meshlib.serving.stack import policy_list
from meshlib.transport.resilience_errors import grpc_status_of

Behavior = Callable[[Any, Any], Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}


def _deadline_of(context: Any) -> Deadline | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:  # grpcio: no deadline
        return None
    return Deadline.after(max(0.0, float(remaining)))


def _peer(context: Any) -> str | None:
    """``HOST:PORT`` of grpcio's ``ipv4:HOST:PORT`` / ``ipv6:%5B...%5D:PORT``."""
    peer: str | None = context.peer()
    if not peer:
        return None
    kind, _, address = peer.partition(":")
    return unquote(address) if kind in ("ipv4", "ipv6") else peer


def _incoming(details: grpc.HandlerCallDetails, context: Any) -> IncomingCall:
    method: str = details.method
    return IncomingCall(
        protocol="grpc",
        method=method,
        path=method,
        peer=_peer(context),
        headers=details.invocation_metadata or (),
        deadline=lambda: _deadline_of(context),
        peer_tls=lambda: grpc_peer_tls(context),
    )


def _rewrap(handler: Handler, wrap: Callable[[Behavior, bool], Behavior]) -> Any:
    for kind, factory in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            return factory(
                wrap(behavior, kind.endswith("_stream")),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _denied(denial: Deny) -> tuple[grpc.StatusCode, str]:
    return _CODES.get(denial.grpc_status, grpc.StatusCode.UNKNOWN), denial.message


class MeshServerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Sync server interceptor: the server policies around every handler."""

    def __init__(
        self,
        *,
        policies: Sequence[ServerPolicy] | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.policies = policy_list(policies, rate_limit)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            return self._wrap(behavior, streaming, handler_call_details)

        result: Handler = _rewrap(handler, wrap)
        return result

    def _admit(self, details: grpc.HandlerCallDetails, context: Any) -> Admitted:
        admitted = admit(self.policies, _incoming(details, context))
        if isinstance(admitted, Deny):
            context.abort(*_denied(admitted))  # raises
        assert isinstance(admitted, Admitted)
        return admitted

    def _wrap(
        self, behavior: Behavior, streaming: bool, details: grpc.HandlerCallDetails
    ) -> Behavior:
        if streaming:

            def stream(request: Any, context: Any) -> Iterator[Any]:
                with self._admit(details, context).scope():
                    try:
                        yield from behavior(request, context)
                    except ResilienceError as error:
                        context.abort(grpc_status_of(error), f"meshlib: {error}")

            return stream

        def unary(request: Any, context: Any) -> Any:
            with self._admit(details, context).scope():
                try:
                    return behavior(request, context)
                except ResilienceError as error:
                    context.abort(grpc_status_of(error), f"meshlib: {error}")

        return unary


class AioMeshServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """``grpc.aio`` server interceptor: the server policies around every handler."""

    def __init__(
        self,
        *,
        policies: Sequence[ServerPolicy] | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.policies = policy_list(policies, rate_limit)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            return self._wrap(behavior, streaming, handler_call_details)

        result: Handler = _rewrap(handler, wrap)
        return result

    async def _admit(self, details: grpc.HandlerCallDetails, context: Any) -> Admitted:
        admitted = admit(self.policies, _incoming(details, context))
        if isinstance(admitted, Deny):
            await context.abort(*_denied(admitted))  # raises
        assert isinstance(admitted, Admitted)
        return admitted

    def _wrap(
        self, behavior: Behavior, streaming: bool, details: grpc.HandlerCallDetails
    ) -> Behavior:
        if inspect.isasyncgenfunction(behavior) or (streaming and not _is_async(behavior)):
            return self._wrap_stream(behavior, details)

        async def unary(request: Any, context: Any) -> Any:
            with (await self._admit(details, context)).scope():
                try:
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                except ResilienceError as error:
                    await context.abort(grpc_status_of(error), f"meshlib: {error}")

        return unary

    def _wrap_stream(self, behavior: Behavior, details: grpc.HandlerCallDetails) -> Behavior:
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            with (await self._admit(details, context)).scope():
                try:
                    responses = behavior(request, context)
                    if hasattr(responses, "__aiter__"):
                        async for item in responses:
                            yield item
                    else:
                        for item in responses:
                            yield item
                except ResilienceError as error:
                    await context.abort(grpc_status_of(error), f"meshlib: {error}")

        return stream


class DeadlineServerInterceptor(MeshServerInterceptor):
    """The default policy list (the caller's deadline; ``rate_limit=`` adds a local
    rate limit): kept for code written before the policy list."""

    def __init__(self, *, rate_limit: TokenBucket | None = None) -> None:
        super().__init__(rate_limit=rate_limit)


class AioDeadlineServerInterceptor(AioMeshServerInterceptor):
    """The ``grpc.aio`` twin of :class:`DeadlineServerInterceptor`."""

    def __init__(self, *, rate_limit: TokenBucket | None = None) -> None:
        super().__init__(rate_limit=rate_limit)


def _is_async(behavior: Behavior) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
