"""Per-try admission against a cluster's circuit-breaker thresholds.

meshlib's model of Envoy's counters (one client process = one proxy):

- ``max_requests``: tries in flight to the cluster; beyond it a try fails fast
  with :class:`~meshlib.errors.CircuitBreakerOverflow` (``max_requests``).
- ``max_connections``: every try in flight holds one upstream connection (the
  HTTP/1.1 view, applied to HTTP/2 and gRPC alike so the limit means the same
  everywhere). A try that finds them all busy becomes *pending*: it waits for
  one to free up, until its deadline.
- ``max_pending_requests``: how many tries may wait so; beyond it the try
  fails fast (``max_pending_requests``), as Envoy's pending overflow.

The happy path takes two counters without waiting (a few lock operations);
only a pending try waits (sync: on a condition; async: polling every few
milliseconds, so one gate serves every thread and event loop).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Final

from meshlib.errors import DeadlineExceeded
from meshlib.resilience.breaker_thresholds import ClusterThresholds
from meshlib.resilience.deadline import Deadline

_WAIT_SLICE_S: Final = 0.05  # a sync waiter re-checks at least this often
_POLL_S: Final = 0.002  # an async waiter polls this often


class Admission:
    """Gates the tries of one cluster (shared by every request to it)."""

    __slots__ = ("_freed", "thresholds", "waiting")

    def __init__(self, thresholds: ClusterThresholds) -> None:
        self.thresholds = thresholds
        self._freed = threading.Condition()
        #: Sync waiters (read without the lock): a freed slot is announced only to them.
        self.waiting = 0

    def _pending_timeout(self, deadline: Deadline | None) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"cluster {self.thresholds.cluster!r}: deadline exceeded while pending a connection "
            f"(max_connections {self.thresholds.connections.limit})"
        )

    def enter(self, deadline: Deadline | None) -> None:
        """Admit one try (sync); pair with :meth:`exit`. Raises overflow or deadline errors."""
        requests = self.thresholds.requests
        requests.acquire()
        try:
            if not self.thresholds.connections.try_acquire():
                self._wait_pending(deadline)
        except BaseException:
            requests.release()
            raise

    async def enter_async(self, deadline: Deadline | None) -> None:
        """The async twin of :meth:`enter` (never blocks the event loop)."""
        requests = self.thresholds.requests
        requests.acquire()
        try:
            if not self.thresholds.connections.try_acquire():
                await self._wait_pending_async(deadline)
        except BaseException:
            requests.release()
            raise

    def start_call(self) -> bool:
        """Admit a call's first try without waiting, counting the call in the retry budget
        too, in one step; False (nothing held) when it would overflow or queue."""
        return self.thresholds.start_call()

    def end_call(self) -> None:
        """The call ended with its first try: its slots and its budget count, in one step."""
        self.thresholds.end_call()
        if self.waiting:
            self.notify_freed()

    def notify_freed(self) -> None:
        """Wake one sync waiter: a slot was freed (call when :attr:`waiting`)."""
        with self._freed:
            self._freed.notify()

    def exit(self) -> None:
        """The try ended: free its connection and request slots."""
        self.thresholds.connections.release()
        self.thresholds.requests.release()
        if self.waiting:
            self.notify_freed()

    def _wait_pending(self, deadline: Deadline | None) -> None:
        connections = self.thresholds.connections
        with self.thresholds.pending(), self._freed:
            self.waiting += 1
            try:
                while not connections.try_acquire():
                    remaining = None if deadline is None else deadline.remaining()
                    if remaining is not None and remaining <= 0:
                        raise self._pending_timeout(deadline)
                    wait = _WAIT_SLICE_S if remaining is None else min(remaining, _WAIT_SLICE_S)
                    self._freed.wait(wait)
            finally:
                self.waiting -= 1

    async def _wait_pending_async(self, deadline: Deadline | None) -> None:
        connections = self.thresholds.connections
        with self.thresholds.pending():
            while not connections.try_acquire():
                if deadline is not None and deadline.expired():
                    raise self._pending_timeout(deadline)
                await asyncio.sleep(_POLL_S)
