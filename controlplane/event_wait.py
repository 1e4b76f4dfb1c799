"""Wait for an asyncio event, or a timeout, in a way that a cancel always stops."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Return when ``event`` is set or ``timeout`` seconds have passed.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancel that arrives as the
    event fires, so a loop around it would never stop (a control plane hung in stop()).
    """
    wake = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({wake}, timeout=timeout)
    finally:
        wake.cancel()
