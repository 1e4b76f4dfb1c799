"""One client per endpoint (an httpx transport or a gRPC channel), made on
first use and closed when its endpoint leaves every service it serves.

Clients are made with the cluster's connection-pool settings
(:class:`~meshlib.routing.connection_pool.PoolSettings`) and kept per
(endpoint, settings): when a cluster's settings change, the next call opens a
client with the new ones and the cluster's old client is drained.

The pool listens to the service states it has routed for; each published
view (on the xDS thread) recomputes the endpoints still listed. A client whose
endpoint left is drained, not cut: no new request picks it, and it is handed
to ``on_stale`` ``drain_s`` seconds later, so calls already in flight on it
can finish (closed right there for sync clients, scheduled onto their event
loop for asyncio ones: :class:`LoopCloser`). An endpoint that comes back
while draining gets its client back. Lookups are a dict read; only creation
takes the lock.

mTLS: the workload certificate is part of the settings, so a rotated certificate
(new settings in the service's next snapshot) opens new clients with it and drains
the old ones; those get ``ROTATION_DRAIN_S`` (longer streams may run on them: the
certificate they were opened with stays valid a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from meshlib.observability.logging import get_logger
from meshlib.routing.connection_pool import (
    DEFAULT_POOL_SETTINGS,
    PoolSettings,
    only_certificate_differs,
)
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.xds_client.resources import Endpoint

log = get_logger(__name__)

T = TypeVar("T")

#: How long a removed endpoint's client stays open for the calls already on it.
DEFAULT_DRAIN_S = 1.0
#: How long a client opened with a rotated-out workload certificate stays open.
ROTATION_DRAIN_S = 60.0


class EndpointPool(Generic[T]):
    """Clients by endpoint authority (``host:port``)."""

    def __init__(
        self,
        factory: Callable[[Endpoint, PoolSettings], T],
        on_stale: Callable[[list[T]], None],
        *,
        drain_s: float = DEFAULT_DRAIN_S,
    ) -> None:
        self._factory = factory
        self._on_stale = on_stale
        self._drain_s = drain_s
        self._lock = threading.Lock()
        # authority -> settings -> client
        self._clients: dict[str, dict[PoolSettings, T]] = {}
        # (authority, settings) -> (client, close at)
        self._draining: dict[tuple[str, PoolSettings], tuple[T, float]] = {}
        self._timer: threading.Timer | None = None
        self._states: dict[str, ServiceState] = {}
        self._closed = False

    def get(self, endpoint: Endpoint, settings: PoolSettings = DEFAULT_POOL_SETTINGS) -> T:
        by_settings = self._clients.get(endpoint.authority)
        if by_settings is not None:
            client = by_settings.get(settings)
            if client is not None:
                return client
        return self._open(endpoint, settings)

    def _open(self, endpoint: Endpoint, settings: PoolSettings) -> T:
        authority = endpoint.authority
        replaced: list[PoolSettings] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("this mesh transport is closed")
            by_settings = self._clients.setdefault(authority, {})
            client = by_settings.get(settings)
            if client is not None:
                return client
            revived = self._draining.pop((authority, settings), None)
            client = revived[0] if revived is not None else self._factory(endpoint, settings)
            # The same cluster's client with its previous settings: drained.
            replaced = [s for s in by_settings if s.cluster == settings.cluster]
            now = time.monotonic()
            for old in replaced:
                rotated = only_certificate_differs(old, settings)
                close_at = now + (
                    max(self._drain_s, ROTATION_DRAIN_S) if rotated else self._drain_s
                )
                self._draining[(authority, old)] = (by_settings.pop(old), close_at)
            by_settings[settings] = client
            if replaced:
                self._arm_timer()
        log.debug("endpoint_client_opened", endpoint=authority, cluster=settings.cluster)
        if replaced:
            log.info(
                "endpoint_client_settings_changed", endpoint=authority, cluster=settings.cluster
            )
        return client

    def track(self, state: ServiceState) -> None:
        """Close clients of endpoints ``state`` drops (call once per routed request; cheap)."""
        if self._states.get(state.target) is state:
            return
        with self._lock:
            if self._states.get(state.target) is state:
                return
            self._states[state.target] = state
        state.add_listener(self._on_view)

    def authorities(self) -> list[str]:
        """Endpoints that currently have an open client (for tests and debugging)."""
        return sorted(a for a, by_settings in self._clients.items() if by_settings)

    def _on_view(self, _view: ServiceView) -> None:
        with self._lock:
            live: set[str] = set()
            for state in self._states.values():
                view = state.view
                if isinstance(view, ServiceSnapshot):
                    live |= view.authorities
            stale = [a for a in self._clients if a not in live]
            close_at = time.monotonic() + self._drain_s
            for authority in stale:
                for settings, client in self._clients.pop(authority).items():
                    self._draining[(authority, settings)] = (client, close_at)
            if stale:
                self._arm_timer()
        if stale:
            log.info("endpoint_clients_draining", endpoints=stale, drain_s=self._drain_s)

    def _arm_timer(self) -> None:
        """(Under the lock.) Wake up when the next draining client is due."""
        if self._timer is not None or not self._draining or self._closed:
            return
        due = min(at for _, at in self._draining.values())
        self._timer = threading.Timer(max(0.0, due - time.monotonic()), self._close_due)
        self._timer.daemon = True
        self._timer.start()

    def _close_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._timer = None
            due = [key for key, (_, at) in self._draining.items() if at <= now]
            removed = [self._draining.pop(key)[0] for key in due]
            self._arm_timer()
        if removed:
            log.info("endpoint_clients_closing", endpoints=sorted({a for a, _ in due}))
            self._on_stale(removed)

    def drain(self) -> list[T]:
        """Stop tracking, and hand back every client for the caller to close."""
        with self._lock:
            self._closed = True
            clients = [c for by_settings in self._clients.values() for c in by_settings.values()]
            clients += [c for c, _ in self._draining.values()]
            self._clients.clear()
            self._draining.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            states = list(self._states.values())
            self._states.clear()
        for state in states:
            state.remove_listener(self._on_view)
        return clients


class LoopCloser(Generic[T]):
    """Runs async ``close`` of stale clients on the event loop that uses them."""

    def __init__(self, close: Callable[[T], Awaitable[None]]) -> None:
        self._close = close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[T] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def bind_running(self) -> None:
        """Remember the running loop as the one the clients live on (first call wins)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def schedule(self, clients: list[T]) -> None:
        """Called from any thread: close ``clients`` soon, on their loop."""
        with self._lock:
            self._pending.extend(clients)
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: aclose_all() closes them
            loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        with self._lock:
            clients, self._pending = self._pending, []
        for client in clients:
            task = asyncio.ensure_future(self._close_one(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _close_one(self, client: T) -> None:
        try:
            await self._close(client)
        except Exception:
            log.exception("endpoint_client_close_failed")

    async def aclose_all(self, more: list[T]) -> None:
        """Close ``more``, anything still pending, and wait for closes in flight."""
        with self._lock:
            clients, self._pending = self._pending + more, []
        for client in clients:
            await self._close_one(client)
        if self._tasks:
            await asyncio.gather(*self._tasks)
