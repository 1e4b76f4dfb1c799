"""The set of mesh service names, learnt from one wildcard LDS watch.

The control plane names each service's listener ``HOST:PORT``; a wildcard
LDS subscription lists them all, so ``name in membership`` answers "is this a
mesh service?" exactly, and follows every change of the config at once. Until
the first complete answer arrives, callers wait for it (up to their timeout).
While the control plane is away the last known set stays (fail static).

Before that first answer the control plane may also be known *unreachable*:
the ADS stream failed before any list came, or a wait for the list ran out.
Callers that can do without the list (the httpx pass-through,
:mod:`meshlib.transport.http_membership`) stop waiting then; the mark is
dropped for good when the list arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping

from meshlib.errors import ServiceNotReadyError, XdsError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.inbound_resources import InboundListenerResource
from meshlib.xds_client.watchers import CancelWatch

log = get_logger(__name__)

# An async waiter: its loop, its future, and whether "unreachable" also ends its wait.
_AsyncWaiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", bool]


class Membership:
    """A wildcard LDS watcher keeping the current set of listener names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._async_waiters: list[_AsyncWaiter] = []
        #: The current names; None until the first complete wildcard answer.
        self.names: frozenset[str] | None = None
        #: Why the control plane counts as unreachable while no list has arrived (else None).
        self.unreachable: str | None = None
        self.cancel: CancelWatch = lambda: None

    # --- reading (any thread) -------------------------------------------------

    def contains(self, name: str, timeout: float) -> bool:
        """Whether ``name`` is a mesh service, waiting up to ``timeout`` for the first set."""
        names = self.names
        if names is None:
            names = self.wait(timeout)
            if names is None:
                raise _not_known(name, timeout)
        return name in names

    async def contains_async(self, name: str, timeout: float) -> bool:
        names = self.names
        if names is None:
            names = await self.wait_async(timeout)
            if names is None:
                raise _not_known(name, timeout)
        return name in names

    def wait(self, timeout: float, *, settle: bool = False) -> frozenset[str] | None:
        """The names, waiting up to ``timeout`` for the first list (with ``settle``: only
        while the control plane is not known unreachable). None when they are not known;
        a wait that runs out marks the control plane unreachable."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._settled(settle), timeout):
                waiters = self._mark_unreachable(f"no service list within {timeout:g}s")
            else:
                waiters = []
            names = self.names
        _wake(waiters)
        return names

    async def wait_async(self, timeout: float, *, settle: bool = False) -> frozenset[str] | None:
        """The async twin of :meth:`wait`."""
        if self._settled(settle):
            return self.names
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future, settle)
        with self._lock:
            if self._settled(settle):
                return self.names
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            with self._lock:
                woken = self._mark_unreachable(f"no service list within {timeout:g}s")
            _wake(woken)
        finally:
            with self._lock, contextlib.suppress(ValueError):  # already taken by a wake-up
                self._async_waiters.remove(waiter)
        return self.names

    def _settled(self, settle: bool) -> bool:
        return self.names is not None or (settle and self.unreachable is not None)

    def _mark_unreachable(self, why: str) -> list[_AsyncWaiter]:
        """Under the lock: take the control plane as unreachable (unless the list is
        known); the async waiters that this ends, to wake outside the lock."""
        if self.names is not None or self.unreachable is not None:
            return []
        self.unreachable = why
        self._changed.notify_all()
        woken = [waiter for waiter in self._async_waiters if waiter[2]]
        self._async_waiters = [waiter for waiter in self._async_waiters if not waiter[2]]
        return woken

    # --- the wildcard watcher (xDS thread) --------------------------------------

    def on_changed(self, resources: Mapping[str, object]) -> None:
        # A server's own inbound listener is in the same LDS world; it is no service.
        names = frozenset(
            name for name, r in resources.items() if not isinstance(r, InboundListenerResource)
        )
        previous = self.names
        with self._lock:
            self.names = names
            self.unreachable = None
            waiters, self._async_waiters = self._async_waiters, []
            self._changed.notify_all()
        _wake(waiters)
        if previous != names:
            log.info(
                "mesh_services_changed",
                count=len(names),
                added=sorted(names - (previous or frozenset())),
                removed=sorted((previous or frozenset()) - names),
            )

    def on_resource_error(self, error: XdsError) -> None:
        log.warning("mesh_services_error", error=str(error))

    def on_ambient_error(self, error: XdsError) -> None:
        log.warning("mesh_services_ambient_error", error=str(error))
        with self._lock:
            waiters = self._mark_unreachable(str(error))
        _wake(waiters)


def _not_known(name: str, timeout: float) -> ServiceNotReadyError:
    return ServiceNotReadyError(
        f"service {name}: the mesh's service list did not arrive within {timeout:g}s "
        "(is the control plane reachable?)"
    )


def _wake(waiters: list[_AsyncWaiter]) -> None:
    for loop, future, _settle in waiters:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
