"""gRPC server interceptors: run each handler under the caller's deadline.

grpcio turns the caller's ``grpc-timeout`` into ``context.time_remaining()``;
these interceptors put that budget into meshlib's deadline context around the
handler, so every mesh call the handler makes (httpx or gRPC, sync or async)
shares it and passes what is left downstream. A call whose deadline has
already passed is refused with DEADLINE_EXCEEDED before the handler starts.
A resilience error escaping the handler (a downstream deadline, an open
breaker, ...) ends the call with its matching status instead of UNKNOWN.

Optionally a local rate limit (:class:`~meshlib.resilience.TokenBucket`)
guards the server: an empty bucket answers UNAVAILABLE (or
RESOURCE_EXHAUSTED when the bucket says so) without running the handler.

    server = grpc.server(pool, interceptors=[meshlib.DeadlineServerInterceptor()])
    server = grpc.aio.server(interceptors=[meshlib.AioDeadlineServerInterceptor()])
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeAlias

import grpc
import grpc.aio

from meshlib.errors import ResilienceError
from meshlib.resilience.deadline import Deadline, deadline_scope
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.transport.resilience_errors import grpc_status_of

Behavior = Callable[[Any, Any], Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _incoming_deadline(context: Any) -> Deadline | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:  # grpcio: no deadline
        return None
    return Deadline.after(max(0.0, float(remaining)))


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


class DeadlineServerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Sync server interceptor: handlers run under the caller's deadline."""

    def __init__(self, *, rate_limit: TokenBucket | None = None) -> None:
        self.rate_limit = rate_limit

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        result: Handler = _rewrap(handler, self._wrap)
        return result

    def _admit(self, context: Any) -> Deadline | None:
        if self.rate_limit is not None and not self.rate_limit.try_acquire():
            error = self.rate_limit.rejection()
            context.abort(grpc_status_of(error), f"meshlib: {error}")
        deadline = _incoming_deadline(context)
        if deadline is not None and deadline.expired():
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "meshlib: deadline already exceeded")
        return deadline

    def _wrap(self, behavior: Behavior, streaming: bool) -> Behavior:
        if streaming:

            def stream(request: Any, context: Any) -> Iterator[Any]:
                deadline = self._admit(context)
                with deadline_scope(deadline=deadline):
                    try:
                        yield from behavior(request, context)
                    except ResilienceError as error:
                        context.abort(grpc_status_of(error), f"meshlib: {error}")

            return stream

        def unary(request: Any, context: Any) -> Any:
            deadline = self._admit(context)
            with deadline_scope(deadline=deadline):
                try:
                    return behavior(request, context)
                except ResilienceError as error:
                    context.abort(grpc_status_of(error), f"meshlib: {error}")

        return unary


class AioDeadlineServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """``grpc.aio`` server interceptor: handlers run under the caller's deadline."""

    def __init__(self, *, rate_limit: TokenBucket | None = None) -> None:
        self.rate_limit = rate_limit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        result: Handler = _rewrap(handler, self._wrap)
        return result

    async def _admit(self, context: Any) -> Deadline | None:
        if self.rate_limit is not None and not self.rate_limit.try_acquire():
            error = self.rate_limit.rejection()
            await context.abort(grpc_status_of(error), f"meshlib: {error}")
        deadline = _incoming_deadline(context)
        if deadline is not None and deadline.expired():
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "meshlib: deadline already exceeded"
            )
        return deadline

    def _wrap(self, behavior: Behavior, streaming: bool) -> Behavior:
        if inspect.isasyncgenfunction(behavior) or (streaming and not _is_async(behavior)):
            return self._wrap_stream(behavior)

        async def unary(request: Any, context: Any) -> Any:
            deadline = await self._admit(context)
            with deadline_scope(deadline=deadline):
                try:
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                except ResilienceError as error:
                    await context.abort(grpc_status_of(error), f"meshlib: {error}")

        return unary

    def _wrap_stream(self, behavior: Behavior) -> Behavior:
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            deadline = await self._admit(context)
            with deadline_scope(deadline=deadline):
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


def _is_async(behavior: Behavior) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
