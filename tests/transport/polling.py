"""Poll a condition with a deadline (no fixed sleeps), for sync and async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

STEP_S = 0.01


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(STEP_S)


async def eventually_async(check: Callable[[], bool], timeout: float = 3.0) -> None:
    for _ in range(int(timeout / STEP_S)):
        if check():
            return
        await asyncio.sleep(STEP_S)
    if not check():
        raise AssertionError("condition not met in time")
