"""An aio unary call whose tries run in the task that awaits it (no task per call).

A unary call with resilience (retries, deadline, faults...) is a coroutine
that resolves to the last try's finished grpc call and its answer. Awaiting a
:class:`LazyUnaryCall` runs that coroutine inline in the caller's task, so the
common ``await stub.Method(request)`` costs no extra task or event-loop turn.
Anything else done with the call before it is awaited (``cancel()``,
``code()``, ``add_done_callback()``, ...) starts it in a task and forwards to
a :class:`~meshlib.transport.grpc_aio_deferred.DeferredCall`, which behaves
like grpc's own call. Unlike grpc's call, the RPC starts when first awaited
or used, not when created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

from meshlib.transport.grpc_aio_deferred import DeferredCall

# Resolves to (the finished grpc call, its answer).
Resolve = Callable[[], Coroutine[Any, Any, tuple[Any, Any]]]


async def _resolved(call: Any, error: BaseException | None) -> Any:
    if error is not None:
        raise error
    return call


async def _call_of(resolving: Coroutine[Any, Any, tuple[Any, Any]]) -> Any:
    call, _answer = await resolving
    return call


class LazyUnaryCall:
    """See the module docstring; ``resolve()`` returns the finished grpc call and its answer."""

    __slots__ = ("_call", "_deferred", "_error", "_resolve")

    def __init__(self, resolve: Resolve) -> None:
        self._resolve: Resolve | None = resolve
        self._deferred: DeferredCall | None = None
        self._call: Any = None
        self._error: BaseException | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        # A generator itself (no coroutine in between): one level less to resume at
        # each wake-up of the call.
        if self._deferred is not None:
            return (yield from self._deferred.__await__())
        resolve, self._resolve = self._resolve, None
        if resolve is None:  # awaited again after an inline run
            return (yield from self._started().__await__())
        try:
            self._call, answer = yield from resolve().__await__()
        except BaseException as error:
            self._error = error
            raise
        return answer

    def _started(self) -> DeferredCall:
        if self._deferred is None:
            resolve, self._resolve = self._resolve, None
            coroutine = (
                _call_of(resolve()) if resolve is not None else _resolved(self._call, self._error)
            )
            self._deferred = DeferredCall(coroutine)
        return self._deferred

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._started().__aiter__()

    async def initial_metadata(self) -> Any:
        return await self._started().initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._started().trailing_metadata()

    async def code(self) -> Any:
        return await self._started().code()

    async def details(self) -> str:
        return await self._started().details()

    async def debug_error_string(self) -> str:
        return await self._started().debug_error_string()

    async def wait_for_connection(self) -> None:
        await self._started().wait_for_connection()

    def cancel(self) -> bool:
        return self._started().cancel()

    def cancelled(self) -> bool:
        return self._started().cancelled()

    def done(self) -> bool:
        return self._started().done()

    def time_remaining(self) -> float | None:
        return self._started().time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._started().add_done_callback(callback)
