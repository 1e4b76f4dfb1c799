"""Coalesce bursts of changes into one rebuild.

The action runs ``delay_s`` after the last trigger, but never later than
``max_delay_s`` after the first trigger of the burst, so a steady stream of
changes still gets applied.

A trigger ``at_once`` (a config change: checked whole already, and a file edit
already batched by the watcher) runs the action on the next turn of the loop
when it did not run in the last ``delay_s``: the first change of a quiet spell
waits for no timer. Changes that follow it closely are coalesced as above, so
a burst still makes at most one more run, which sees the latest inputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Debouncer:
    def __init__(self, action: Callable[[], object], *, delay_s: float, max_delay_s: float) -> None:
        if delay_s < 0 or max_delay_s < delay_s:
            raise ValueError(
                f"debounce needs 0 <= delay_s <= max_delay_s, got {delay_s} and {max_delay_s}"
            )
        self._action = action
        self._delay_s = delay_s
        self._max_delay_s = max_delay_s
        self._first_at: float | None = None
        self._fired_at: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._handle is not None

    def trigger(self, *, at_once: bool = False) -> None:
        """Note a change; must be called on the event loop's thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("Debouncer.trigger must be called on the event loop") from None
        now = loop.time()
        if self._first_at is None:
            self._first_at = now
        fire_at = min(now + self._delay_s, self._first_at + self._max_delay_s)
        if at_once and (self._fired_at is None or now - self._fired_at >= self._delay_s):
            fire_at = now
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_at(fire_at, self._fire)

    def flush(self) -> None:
        """Run a pending action now."""
        if self._handle is not None:
            self._handle.cancel()
            self._fire()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._first_at = None

    def _fire(self) -> None:
        self._handle = None
        self._first_at = None
        try:
            self._fired_at = asyncio.get_running_loop().time()
        except RuntimeError:  # flushed off the loop
            self._fired_at = None
        self._action()
