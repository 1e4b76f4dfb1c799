"""TryTimer and run_within: a try bounded by cancelling its own task, the cancel
taken back when it was the timer's, any other cancel passed through.

Cancel counts (``Task.cancelling``/``uncancel``) exist from Python 3.11; the
tests that need them are skipped on 3.10 (where an outer cancel racing the
timer reads as the timeout, as the class says).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from meshlib.resilience.deadline import TryTimer, run_within

NEEDS_CANCEL_COUNTS = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="cancel counts (Task.cancelling) are Python 3.11+"
)
LONG_S = 5.0  # a wait that only a cancel ends (the tests end well before it)


def cancel_requests(task: asyncio.Task[Any]) -> int:
    """The task's pending cancel requests (0 on Python 3.10, which does not count them)."""
    if sys.version_info >= (3, 11):
        return task.cancelling()
    return 0


def this_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def started(work: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any]:
    """``work`` as a task that has run up to its first wait."""
    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    assert not task.done()
    return task


def block_loop(seconds: float) -> None:
    """Hold the event loop (no task runs), so every timer due meanwhile runs in the
    same loop iteration once it is let go."""
    time.sleep(seconds)


# --- TryTimer ----------------------------------------------------------------------


@NEEDS_CANCEL_COUNTS
async def test_timer_fires_after_its_time_and_its_cancel_is_taken_back() -> None:
    task = this_task()
    before = cancel_requests(task)
    began = time.monotonic()
    timer = TryTimer(0.05)
    fired = False
    try:
        await asyncio.sleep(LONG_S)
    except asyncio.CancelledError:
        fired = timer.fired()
    finally:
        timer.cancel()
    elapsed = time.monotonic() - began
    assert fired
    assert 0.045 <= elapsed < 2.0
    assert cancel_requests(task) == before == 0
    await asyncio.sleep(0)  # the task is not left cancelled
    await asyncio.sleep(0.01)


@NEEDS_CANCEL_COUNTS
async def test_outer_cancel_before_the_timer_passes_through() -> None:
    answers: list[bool] = []

    async def bounded() -> None:
        timer = TryTimer(LONG_S)
        try:
            await asyncio.sleep(LONG_S)
        except asyncio.CancelledError:
            answers.append(timer.fired())
            raise
        finally:
            timer.cancel()

    victim = await started(bounded)
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert answers == [False]
    assert victim.cancelled()


async def test_timer_cancelled_after_a_fast_wait_never_cancels_the_task() -> None:
    task = this_task()
    timer = TryTimer(0.05)
    try:
        await asyncio.sleep(0)
    finally:
        timer.cancel()
    await asyncio.sleep(0.15)  # well past the timer's time: no CancelledError
    assert not timer.fired()
    assert cancel_requests(task) == 0


@NEEDS_CANCEL_COUNTS
@pytest.mark.parametrize("first", ["outer-cancel", "timer"])
async def test_outer_cancel_racing_the_timer_is_not_taken_for_the_timer(first: str) -> None:
    answers: list[bool] = []

    async def bounded() -> None:
        timer = TryTimer(0.02)
        try:
            await asyncio.sleep(LONG_S)
        except asyncio.CancelledError:
            answers.append(timer.fired())
            raise
        finally:
            timer.cancel()

    victim = await started(bounded)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01 if first == "outer-cancel" else 0.03, victim.cancel)
    block_loop(0.1)  # both are due: they run in one iteration, in the order chosen
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert answers == [False]
    assert victim.cancelled()


# --- run_within ----------------------------------------------------------------------


async def test_run_within_returns_the_value_and_leaves_no_timer_behind() -> None:
    async def at_once() -> str:
        return "now"

    assert await run_within(asyncio.sleep(0.01, result="later"), 0.1) == "later"
    assert await run_within(at_once(), 0.1) == "now"
    await asyncio.sleep(0.2)  # past both timers' time: nothing cancels the task
    assert cancel_requests(this_task()) == 0


async def test_run_within_passes_the_awaitables_own_error_through() -> None:
    async def broken() -> None:
        await asyncio.sleep(0)
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await run_within(broken(), 0.1)
    await asyncio.sleep(0.15)
    assert cancel_requests(this_task()) == 0


async def test_run_within_raises_timeout_error_after_its_time() -> None:
    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await run_within(asyncio.sleep(LONG_S), 0.05)
    assert 0.045 <= time.monotonic() - began < 2.0
    assert cancel_requests(this_task()) == 0
    await asyncio.sleep(0)


async def test_outer_cancel_before_run_within_times_out_is_a_cancel() -> None:
    victim = await started(lambda: run_within(asyncio.sleep(LONG_S), LONG_S))
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert victim.cancelled()


@NEEDS_CANCEL_COUNTS
@pytest.mark.parametrize("first", ["outer-cancel", "timer"])
async def test_outer_cancel_racing_run_within_still_propagates(first: str) -> None:
    victim = await started(lambda: run_within(asyncio.sleep(LONG_S), 0.02))
    loop = asyncio.get_running_loop()
    loop.call_later(0.01 if first == "outer-cancel" else 0.03, victim.cancel)
    block_loop(0.1)
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert victim.cancelled()  # a cancel, not asyncio.TimeoutError


async def _caught_inside(seconds: float) -> str:
    """The inner level: a bounded wait whose own timeout is answered here."""
    try:
        await run_within(asyncio.sleep(LONG_S), seconds)
    except asyncio.TimeoutError:
        return "inner timed out"
    return "inner finished"


async def test_nested_inner_shorter_times_out_at_the_inner_level() -> None:
    began = time.monotonic()
    assert await run_within(_caught_inside(0.02), 1.0) == "inner timed out"
    assert time.monotonic() - began < 0.9
    await asyncio.sleep(0)
    assert cancel_requests(this_task()) == 0


async def test_nested_outer_shorter_times_out_at_the_outer_level() -> None:
    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await run_within(_caught_inside(1.0), 0.02)  # the inner handler is not reached
    assert time.monotonic() - began < 0.9
    await asyncio.sleep(0)
    assert cancel_requests(this_task()) == 0


@NEEDS_CANCEL_COUNTS
async def test_nested_timers_expiring_together_time_out_at_the_outer_level() -> None:
    async def nested() -> str:
        return await run_within(_caught_inside(0.02), 0.02)

    victim = await started(nested)
    block_loop(0.1)  # both timers are due in the same iteration
    with pytest.raises(asyncio.TimeoutError):
        await victim
    assert not victim.cancelled()


# --- timers of several event loops (threads) ------------------------------------------


class _SlowToCancel(asyncio.Future[None]):
    """A future whose ``cancel`` waits for ``release``: it stretches the moment a timer
    callback of this loop's thread runs (normally microseconds) so another thread's
    timer reliably expires during it."""

    def __init__(
        self, entered: threading.Event, release: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(loop=loop)
        self.entered = entered
        self.release = release

    def cancel(self, msg: Any | None = None) -> bool:
        self.entered.set()
        self.release.wait(5.0)
        return super().cancel(msg)


def _loop_whose_timer_is_slow_to_cancel(entered: threading.Event, release: threading.Event) -> None:
    async def main() -> None:
        future = _SlowToCancel(entered, release, asyncio.get_running_loop())
        with contextlib.suppress(asyncio.TimeoutError):
            await run_within(future, 0.01)

    asyncio.run(main())


async def test_timers_of_two_event_loops_expiring_together_both_fire() -> None:
    """A timer callback does not lock out another thread's (regression: the callbacks
    once shared one contextvars.Context, which two threads cannot enter at once, so
    the second timer raised RuntimeError in its callback and never cancelled)."""
    entered, release = threading.Event(), threading.Event()
    other = threading.Thread(
        target=_loop_whose_timer_is_slow_to_cancel, args=(entered, release), daemon=True
    )
    other.start()
    loop = asyncio.get_running_loop()
    callback_errors: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: callback_errors.append(repr(context.get("exception")))
    )
    try:
        assert await asyncio.to_thread(entered.wait, 5.0)  # the other loop's timer is running
        began = time.monotonic()
        try:
            await run_within(asyncio.sleep(1.0), 0.02)
            outcome = "not cut: the timer never cancelled the wait"
        except asyncio.TimeoutError:
            outcome = "timed out"
        assert (outcome, callback_errors) == ("timed out", [])
        assert time.monotonic() - began < 0.5
    finally:
        loop.set_exception_handler(previous)
        release.set()
        await asyncio.to_thread(other.join, 5.0)
