"""Async polling with a deadline for the control plane tests (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(probe: Callable[[], object], timeout: float = 3.0, what: str = "") -> None:
    """Await until ``probe()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(0.01)


async def eventually_await(
    probe: Callable[[], Awaitable[object]], timeout: float = 5.0, what: str = ""
) -> None:
    """Await until ``await probe()`` is truthy (an HTTP status, say); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await probe():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(0.02)
