"""Which ``HOST:PORT`` names are mesh services, and their live state.

One directory per :class:`~meshlib.Mesh`, shared by the HTTP and gRPC paths.
The first request for a name starts its LDS watch; the control plane answers
"exists" (a snapshot follows) or "does not exist" quickly. A negative answer
is cached for ``negative_ttl_s`` and the watch is dropped, so probing many
outside hosts leaves nothing running.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterable

import structlog

from meshlib.errors import ServiceNotFoundError
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceFailure, ServiceView
from meshlib.routing.watch import WatchSource

log = structlog.get_logger(__name__)


def split_target(target: str) -> tuple[str, int]:
    """``xds:///host:port`` or ``host:port`` → (host, port); ValueError naming the problem."""
    name = target[len("xds:///") :] if target.startswith("xds:///") else target
    if name.startswith("xds:"):
        raise ValueError(f"target {target!r}: only xds:/// targets (no authority) are supported")
    host, sep, port = name.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r}: expected HOST:PORT or xds:///HOST:PORT")
    return host.strip("[]"), int(port)


def is_mesh_name(host: str) -> bool:
    """False for names that can never be a mesh service (IP literals, localhost)."""
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


class ServiceDirectory:
    """Service states by target, created on first use; negative answers cached briefly."""

    def __init__(
        self,
        source_factory: Callable[[], WatchSource],
        *,
        ready_timeout_s: float = 5.0,
        negative_ttl_s: float = 5.0,
    ) -> None:
        self._source_factory = source_factory
        self.ready_timeout_s = ready_timeout_s
        self.negative_ttl_s = negative_ttl_s
        self._lock = threading.Lock()
        self._services: dict[str, ServiceState] = {}
        self._absent: dict[str, float] = {}
        self._closed = False

    def service(self, target: str) -> ServiceState:
        """The state for ``HOST:PORT``, starting its watches on first use."""
        state = self._services.get(target)
        if state is not None:
            return state
        with self._lock:
            if self._closed:
                raise RuntimeError("the mesh is closed")
            state = self._services.get(target)
            if state is None:
                state = ServiceState(target, self._source_factory())
                self._services[target] = state
        return state

    def known_absent(self, target: str) -> bool:
        """True while a recent "not in the mesh" answer for ``target`` is cached."""
        expiry = self._absent.get(target)
        if expiry is None:
            return False
        if time.monotonic() < expiry:
            return True
        self._absent.pop(target, None)
        return False

    def settle_absent(self, state: ServiceState, view: ServiceView) -> bool:
        """If ``view`` says the service does not exist, cache that, drop its watches: True."""
        if not (isinstance(view, ServiceFailure) and view.error_type is ServiceNotFoundError):
            return False
        with self._lock:
            if self._services.get(state.target) is state:
                del self._services[state.target]
            self._absent[state.target] = time.monotonic() + self.negative_ttl_s
        state.close()
        log.debug("service_not_in_mesh", service=state.target, ttl_s=self.negative_ttl_s)
        return True

    def services(self) -> Iterable[ServiceState]:
        with self._lock:
            return list(self._services.values())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            states = list(self._services.values())
            self._services.clear()
        for state in states:
            state.close()
