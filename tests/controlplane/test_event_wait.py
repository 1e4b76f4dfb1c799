"""wait_event: a loop parked on an event stops when cancelled, even as the event fires
(``asyncio.wait_for`` on Python 3.11 swallows that cancel: the registry's expiry task and
the JWKS keeper would run for ever and a control plane hang in stop())."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from controlplane.event_wait import wait_event


async def _parked_loop(
    event: asyncio.Event, wait: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    while True:
        event.clear()
        await wait(event)


async def _wait_for(event: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=30)


async def _cancel_as_it_fires(wait: Callable[[asyncio.Event], Awaitable[None]], turns: int) -> bool:
    """Whether the loop stopped after a cancel that came ``turns`` turns after a set."""
    event = asyncio.Event()
    task = asyncio.create_task(_parked_loop(event, wait))
    await asyncio.sleep(0.05)  # parked in its wait
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    if task not in done:
        event.set()  # let the loop spin once more, then stop it for good
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        return False
    return task.cancelled()


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_a_cancel_as_the_event_fires_stops_the_loop(turns: int) -> None:
    assert await _cancel_as_it_fires(lambda event: wait_event(event, 30), turns)


async def test_it_returns_on_the_event_and_on_the_timeout() -> None:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_event(event, 0.05)
    assert loop.time() - started >= 0.04
    loop.call_later(0.01, event.set)
    await wait_event(event, 30)
    assert event.is_set()


async def test_asyncio_wait_for_is_what_it_guards_against() -> None:
    """If this fails (a Python whose wait_for passes the cancel on), wait_event can go."""
    outcomes = [await _cancel_as_it_fires(_wait_for, turns) for turns in range(4)]
    assert not all(outcomes)
