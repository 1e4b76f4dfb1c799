"""A watcher that records what it is told, for tests to wait on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from meshlib.errors import XdsError

Event = tuple[str, Any]


class RecordingWatcher:
    def __init__(self, name: str = "w") -> None:
        self.name = name
        self.events: list[Event] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def on_changed(self, resource: Any) -> None:
        self._add(("changed", resource))

    def on_resource_error(self, error: XdsError) -> None:
        self._add(("resource_error", error))

    def on_ambient_error(self, error: XdsError) -> None:
        self._add(("ambient_error", error))

    def _add(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def kinds(self) -> list[str]:
        with self._cond:
            return [kind for kind, _ in self.events]

    def wait_for(
        self, predicate: Callable[[list[Event]], bool], *, timeout_s: float = 5.0
    ) -> list[Event]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name}: condition not met; events: {self.events}")
                self._cond.wait(remaining)
            return list(self.events)

    def wait_count(self, count: int, *, timeout_s: float = 5.0) -> list[Event]:
        return self.wait_for(lambda events: len(events) >= count, timeout_s=timeout_s)

    def last(self) -> Event:
        with self._cond:
            return self.events[-1]
