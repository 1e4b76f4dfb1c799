"""A single thread that runs tasks and timers in order: the client's state owner.

All XdsClient state changes happen here (watches, responses, stream events,
does-not-exist timers), so the state needs no locks and events never race.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from meshlib.observability.logging import get_logger

log = get_logger(__name__)

R = TypeVar("R")
Task = Callable[[], None]


class TimerHandle:
    """A scheduled call; ``cancel()`` from the loop thread is race-free."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class WorkLoop:
    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._tasks: deque[Task] = deque()
        self._timers: list[tuple[float, int, TimerHandle, Task]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, task: Task) -> bool:
        """Queue ``task``; False (and dropped) if the loop is closed."""
        with self._cond:
            if self._closed:
                return False
            self._tasks.append(task)
            self._cond.notify()
            return True

    def call_later(self, delay_s: float, task: Task) -> TimerHandle:
        handle = TimerHandle()
        with self._cond:
            heapq.heappush(
                self._timers, (time.monotonic() + delay_s, next(self._seq), handle, task)
            )
            self._cond.notify()
        return handle

    def call_sync(self, fn: Callable[[], R], timeout_s: float = 10.0) -> R:
        """Run ``fn`` on the loop and return its result (directly if already there
        or if the loop is closed, when no other task can run concurrently)."""
        if self.in_loop():
            return fn()
        future: Future[R] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        if not self.submit(run):
            return fn()
        return future.result(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._tasks.clear()
            self._timers.clear()
            self._cond.notify()
        if not self.in_loop():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                task = self._next_task()
                if task is None:
                    return
            try:
                task()
            except Exception:
                log.exception("xds_client_task_failed")

    def _next_task(self) -> Task | None:
        """Wait (holding the condition) for the next task or due timer; None when closed."""
        while not self._closed:
            if self._tasks:
                return self._tasks.popleft()
            now = time.monotonic()
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers and self._timers[0][0] <= now:
                return heapq.heappop(self._timers)[3]
            wait = self._timers[0][0] - now if self._timers else None
            self._cond.wait(wait)
        return None
