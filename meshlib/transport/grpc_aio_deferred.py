"""A stand-in for a grpc.aio call whose endpoint is not known yet.

Before a service's first snapshot (or when routing fails) an aio multicallable
cannot return grpc's own call object synchronously. It returns this instead:
it resolves the real call in a task (waiting for config, then picking) and
forwards every use — ``await``, ``async for``, ``read``/``write``, metadata,
status — to it. A routing failure surfaces where grpc would surface an RPC
error: when the call is awaited or read (an ``AioRpcError``, UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

import grpc


class DeferredCall:
    """Forwards to the call ``resolve`` produces; see the module docstring."""

    def __init__(self, resolve: Coroutine[Any, Any, Any], target: str = "") -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called from sync code: the task would never run
            resolve.close()
            raise RuntimeError(
                f"grpc.aio channel {target!r}: call it from a coroutine (it needs a running"
                " event loop); sync code uses mesh.grpc_channel()"
            ) from None
        self._task: asyncio.Task[Any] = asyncio.ensure_future(resolve)
        self._task.add_done_callback(_retrieve)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._response().__await__()

    async def _response(self) -> Any:
        return await (await self._task)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        call = await self._task
        async for item in call:
            yield item

    async def read(self) -> Any:
        return await (await self._task).read()

    async def write(self, request: Any) -> None:
        await (await self._task).write(request)

    async def done_writing(self) -> None:
        await (await self._task).done_writing()

    async def initial_metadata(self) -> Any:
        return await self._on_call("initial_metadata", grpc.aio.Metadata())

    async def trailing_metadata(self) -> Any:
        return await self._on_call("trailing_metadata", grpc.aio.Metadata())

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._on_call("code", None)
        return code

    async def details(self) -> str:
        details: str = await self._on_call("details", None)
        return details

    async def debug_error_string(self) -> str:
        text: str = await self._on_call("debug_error_string", None)
        return text

    async def wait_for_connection(self) -> None:
        await self._on_call("wait_for_connection", None)

    async def _on_call(self, name: str, on_error_default: Any) -> Any:
        try:
            call = await self._task
        except grpc.aio.AioRpcError as error:
            if name in ("code", "details", "debug_error_string"):
                return getattr(error, name)()
            return on_error_default
        return await getattr(call, name)()

    def cancel(self) -> bool:
        if not self._task.done():
            return self._task.cancel()
        if self._task.cancelled() or self._task.exception() is not None:
            return False
        return bool(self._task.result().cancel())

    def cancelled(self) -> bool:
        if not self._task.done() or self._task.exception() is not None:
            return self._task.cancelled()
        return bool(self._task.result().cancelled())

    def done(self) -> bool:
        if not self._task.done():
            return False
        if self._task.cancelled() or self._task.exception() is not None:
            return True
        return bool(self._task.result().done())

    def time_remaining(self) -> float | None:
        if self._task.done() and not self._task.cancelled() and self._task.exception() is None:
            remaining: float | None = self._task.result().time_remaining()
            return remaining
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        def forward(task: asyncio.Task[Any]) -> None:
            if task.cancelled() or task.exception() is not None:
                callback(self)
            else:
                task.result().add_done_callback(lambda _call: callback(self))

        self._task.add_done_callback(forward)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failed resolution as seen; the error is re-raised where the call is used."""
    if not task.cancelled():
        task.exception()
