"""Debouncer timing: quiet period after the last change, capped after the first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from controlplane.xds.debounce import Debouncer


async def _wait_for(predicate: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_fires_once_after_the_burst() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    debouncer = Debouncer(lambda: fired.append(loop.time()), delay_s=0.05, max_delay_s=1.0)
    for _ in range(10):
        debouncer.trigger()
        await asyncio.sleep(0.005)
    last = loop.time()
    await _wait_for(lambda: fired)
    assert fired[0] - last >= 0.04
    await asyncio.sleep(0.1)
    assert len(fired) == 1
    assert not debouncer.pending


async def test_steady_changes_still_apply_within_the_cap() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    debouncer = Debouncer(lambda: fired.append(loop.time()), delay_s=0.05, max_delay_s=0.12)
    started = loop.time()
    while loop.time() - started < 0.4:
        debouncer.trigger()
        await asyncio.sleep(0.01)
    debouncer.cancel()
    assert len(fired) >= 2
    assert fired[0] - started < 0.2


async def test_flush_and_cancel() -> None:
    fired: list[int] = []
    debouncer = Debouncer(lambda: fired.append(1), delay_s=10, max_delay_s=10)
    debouncer.trigger()
    debouncer.flush()
    assert fired == [1]
    debouncer.trigger()
    debouncer.cancel()
    assert not debouncer.pending and fired == [1]


def test_bad_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="max_delay_s"):
        Debouncer(lambda: None, delay_s=1.0, max_delay_s=0.5)


async def test_a_change_at_once_after_a_quiet_spell_waits_for_no_timer() -> None:
    fired: list[int] = []
    debouncer = Debouncer(lambda: fired.append(1), delay_s=30, max_delay_s=60)
    debouncer.trigger(at_once=True)
    await _wait_for(lambda: fired)  # well before the 30 s delay
    assert fired == [1] and not debouncer.pending


async def test_changes_at_once_in_a_burst_coalesce_and_the_last_one_is_applied() -> None:
    latest = {"value": 0}
    seen: list[int] = []
    debouncer = Debouncer(lambda: seen.append(latest["value"]), delay_s=2.0, max_delay_s=4.0)
    for value in range(1, 11):
        latest["value"] = value
        debouncer.trigger(at_once=True)
        await asyncio.sleep(0.01)  # lets a run due at once happen
    await _wait_for(lambda: not debouncer.pending, timeout=10)
    await asyncio.sleep(0.05)
    # The first ran at once; the rest of the burst made one more run, with the last value.
    assert len(seen) == 2 and seen[-1] == 10
    assert not debouncer.pending


async def test_a_change_at_once_runs_a_pending_debounced_one_with_it() -> None:
    fired: list[int] = []
    debouncer = Debouncer(lambda: fired.append(1), delay_s=30, max_delay_s=60)
    debouncer.trigger()  # e.g. a registration: waits out the delay
    debouncer.trigger(at_once=True)
    await _wait_for(lambda: fired)
    assert fired == [1] and not debouncer.pending
