"""One client per endpoint (an httpx transport or a gRPC channel), made on
first use and closed when its endpoint leaves every service it serves.

The pool listens to the service states it has routed for; each published
view (on the xDS thread) recomputes the endpoints still listed and hands the
clients of the others to ``on_stale`` — closed right there for sync clients,
scheduled onto their event loop for asyncio ones (:class:`LoopCloser`).
Lookups are a dict read; only creation takes the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.xds_client.resources import Endpoint

log = structlog.get_logger(__name__)

T = TypeVar("T")


class EndpointPool(Generic[T]):
    """Clients by endpoint authority (``host:port``)."""

    def __init__(
        self, factory: Callable[[Endpoint], T], on_stale: Callable[[list[T]], None]
    ) -> None:
        self._factory = factory
        self._on_stale = on_stale
        self._lock = threading.Lock()
        self._clients: dict[str, T] = {}
        self._states: dict[str, ServiceState] = {}
        self._closed = False

    def get(self, endpoint: Endpoint) -> T:
        client = self._clients.get(endpoint.authority)
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError("this mesh transport is closed")
            client = self._clients.get(endpoint.authority)
            if client is None:
                client = self._factory(endpoint)
                self._clients[endpoint.authority] = client
                log.debug("endpoint_client_opened", endpoint=endpoint.authority)
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
        return sorted(self._clients)

    def _on_view(self, _view: ServiceView) -> None:
        with self._lock:
            live: set[str] = set()
            for state in self._states.values():
                view = state.view
                if isinstance(view, ServiceSnapshot):
                    live |= view.authorities
            stale = [a for a in self._clients if a not in live]
            removed = [self._clients.pop(a) for a in stale]
        if removed:
            log.info("endpoint_clients_closing", endpoints=stale)
            self._on_stale(removed)

    def drain(self) -> list[T]:
        """Stop tracking, and hand back every client for the caller to close."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
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
