"""Runs watcher callbacks one at a time, in order, on their own thread.

Watchers never run on the ADS thread or the client's work loop, so a slow or
failing watcher delays only other watchers, and its exception is logged, not
fatal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from meshlib.observability.logging import get_logger

log = get_logger(__name__)

Callback = Callable[[], None]


class CallbackSerializer:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callback | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def schedule(self, callback: Callback) -> None:
        if not self._closed:
            self._queue.put(callback)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the callback now running; pending ones are dropped."""
        self._closed = True
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            callback = self._queue.get()
            if callback is None or self._closed:
                return
            try:
                callback()
            except Exception:
                log.exception("xds_watcher_failed")
