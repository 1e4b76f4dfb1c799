"""The set of mesh service names, learnt from one wildcard LDS watch.

The control plane names each service's listener ``HOST:PORT``; a wildcard
LDS subscription lists them all, so ``name in membership`` answers "is this a
mesh service?" exactly, and follows every change of the config at once. Until
the first complete answer arrives, callers wait for it (up to their timeout).
While the control plane is away the last known set stays (fail static).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping

from meshlib.errors import ServiceNotReadyError, XdsError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.watchers import CancelWatch

log = get_logger(__name__)


class Membership:
    """A wildcard LDS watcher keeping the current set of listener names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known = threading.Event()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        #: The current names; None until the first complete wildcard answer.
        self.names: frozenset[str] | None = None
        self.cancel: CancelWatch = lambda: None

    # --- reading (any thread) -------------------------------------------------

    def contains(self, name: str, timeout: float) -> bool:
        """Whether ``name`` is a mesh service, waiting up to ``timeout`` for the first set."""
        names = self.names
        if names is None:
            if not self._known.wait(timeout):
                raise _not_known(name, timeout)
            names = self.names
            assert names is not None
        return name in names

    async def contains_async(self, name: str, timeout: float) -> bool:
        names = self.names
        if names is None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if self.names is None:
                    self._async_waiters.append((loop, future))
                else:
                    future.set_result(None)
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise _not_known(name, timeout) from None
            names = self.names
            assert names is not None
        return name in names

    # --- the wildcard watcher (xDS thread) --------------------------------------

    def on_changed(self, resources: Mapping[str, object]) -> None:
        names = frozenset(resources)
        previous = self.names
        with self._lock:
            self.names = names
            waiters, self._async_waiters = self._async_waiters, []
        self._known.set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)
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


def _not_known(name: str, timeout: float) -> ServiceNotReadyError:
    return ServiceNotReadyError(
        f"service {name}: the mesh's service list did not arrive within {timeout:g}s "
        "(is the control plane reachable?)"
    )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
