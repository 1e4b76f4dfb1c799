"""The stream's event queue: order kept, a waiting reader woken, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.xds.mailbox import Mailbox


async def test_items_come_out_in_order_and_a_waiting_reader_is_woken() -> None:
    box: Mailbox[int] = Mailbox()
    box.put_nowait(1)
    box.put_nowait(2)
    assert [await box.get(), await box.get()] == [1, 2]
    waiting = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.put_nowait(3)
    box.put_nowait(4)
    assert await asyncio.wait_for(waiting, 5) == 3
    assert len(box) == 1 and await box.get() == 4


async def test_a_cancelled_reader_loses_nothing() -> None:
    box: Mailbox[str] = Mailbox()
    waiting = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    box.put_nowait("kept")
    assert await asyncio.wait_for(box.get(), 5) == "kept"


async def test_a_second_reader_is_refused() -> None:
    box: Mailbox[int] = Mailbox()
    first = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await box.get()
    box.put_nowait(1)
    assert await asyncio.wait_for(first, 5) == 1
