"""Services the mesh marks degraded: one operator switch, every caller falls back.

The control plane sets ``degraded`` in a cluster's metadata (from the
ServiceEntry annotation ``meshlib.dev/degraded: "true"``); the data path calls
:meth:`DegradedServices.mark` when cluster config changes. ``@fallback(handler,
service="sessions:50051")`` asks :meth:`DegradedServices.is_degraded` before
each call and goes straight to the handler while the service is degraded.
Services are named ``HOST:PORT`` (``xds:///`` prefixes are stripped; a bare
``HOST`` means port 80, as mesh URLs do).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from meshlib.observability.logging import get_logger

_log = get_logger(__name__)

DegradedListener = Callable[[str, bool], None]


def service_key(service: str) -> str:
    """The canonical ``HOST:PORT`` name of a service."""
    name = service.strip()
    if name.startswith("xds:///"):
        name = name[len("xds:///") :]
    host, sep, port = name.rpartition(":")
    if not sep or not port.isdigit():
        return f"{name}:80"
    return f"{host}:{port}"


class DegradedServices:
    """A thread-safe set of degraded services; reads are lock-free snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._degraded: frozenset[str] = frozenset()
        self._listeners: list[DegradedListener] = []

    def mark(self, service: str, degraded: bool) -> None:
        """Mark ``service`` degraded or healthy again (logged when it changes)."""
        key = service_key(service)
        with self._lock:
            before = key in self._degraded
            if before == degraded:
                return
            self._degraded = self._degraded | {key} if degraded else self._degraded - {key}
            listeners = list(self._listeners)
        _log.warning("service_degraded" if degraded else "service_recovered", service=key)
        for listener in listeners:
            listener(key, degraded)

    def replace(self, degraded: Iterable[str]) -> None:
        """Set the whole degraded set at once (e.g. from a new config snapshot)."""
        wanted = frozenset(service_key(s) for s in degraded)
        with self._lock:
            current = self._degraded
        for key in sorted(current - wanted):
            self.mark(key, False)
        for key in sorted(wanted - current):
            self.mark(key, True)

    def is_degraded(self, service: str) -> bool:
        return service_key(service) in self._degraded

    def snapshot(self) -> frozenset[str]:
        return self._degraded

    def add_listener(self, listener: DegradedListener) -> None:
        with self._lock:
            self._listeners.append(listener)


degraded_services = DegradedServices()
"""The process-wide registry the data path updates and ``@fallback`` reads."""
