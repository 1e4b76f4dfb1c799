"""A stream's event queue: many put without waiting, one task takes in order.

``asyncio.Queue`` serves many getters and bounded puts, and pays for it on
every message and in every stream it is created for; a fleet of thousands of
streams exchanging several messages each pays that thousands of times. The
stream's loop is the only reader, so a deque and one waiter are enough.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """FIFO for one reader task; ``put_nowait`` from anywhere on the event loop."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one; a single task may wait at a time."""
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Mailbox.get: another task is already waiting")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
