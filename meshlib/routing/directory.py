"""Which ``HOST:PORT`` names are mesh services, and their live state.

One directory per :class:`~meshlib.Mesh`, shared by the HTTP and gRPC paths.
Membership comes from one wildcard LDS watch (started on first use): every
mesh service has a listener named ``HOST:PORT``, so a name absent from the
complete listener set is not a mesh service — known at once, and following
config changes at once. A member's :class:`ServiceState` (its LDS → RDS → CDS
→ EDS watches) is started on first use; non-members start nothing.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from meshlib.resilience.xds_cluster import ClusterResilienceRegistry
from meshlib.routing._membership import Membership
from meshlib.routing.service import ServiceState
from meshlib.routing.watch import WatchSource
from meshlib.xds_client.resource_types import LISTENER
from meshlib.xds_client.resources import Locality

if TYPE_CHECKING:
    from meshlib.security.keeper import CertificateKeeper


def split_target(target: str) -> tuple[str, int]:
    """``xds:///host:port`` or ``host:port`` → (host, port); ValueError naming the problem."""
    name = target[len("xds:///") :] if target.startswith("xds:///") else target
    if name.startswith("xds:"):
        raise ValueError(
            f"target {target!r}: expected xds:///HOST:PORT (three slashes: no authority)"
        )
    if ":/" in name:  # dns:///, unix:, ipv4: ... are grpcio's resolvers, not the mesh's
        raise ValueError(f"target {target!r}: a mesh channel takes xds:///HOST:PORT or HOST:PORT")
    host, sep, port = name.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r}: expected HOST:PORT or xds:///HOST:PORT")
    return host.strip("[]"), int(port)


_MESH_NAME_CACHE: dict[str, bool] = {}
_MESH_NAME_CACHE_LIMIT = 4096


def is_mesh_name(host: str) -> bool:
    """False for names that can never be a mesh service (IP literals, localhost).

    Asked on every request, so answers are cached per host (bounded: once
    full, new hosts are computed each time rather than evicting).
    """
    cached = _MESH_NAME_CACHE.get(host)
    if cached is not None:
        return cached
    answer = _is_mesh_name(host)
    if len(_MESH_NAME_CACHE) < _MESH_NAME_CACHE_LIMIT:
        _MESH_NAME_CACHE[host] = answer
    return answer


def _is_mesh_name(host: str) -> bool:
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


class ServiceDirectory:
    """Mesh membership (one wildcard LDS watch) and service states by target."""

    def __init__(
        self,
        source_factory: Callable[[], WatchSource],
        *,
        ready_timeout_s: float = 5.0,
        local_locality: Locality | None = None,
        certificates: CertificateKeeper | None = None,
    ) -> None:
        self._source_factory = source_factory
        #: The workload certificate (None: no identity); a rotation rebuilds every service.
        self.certificates = certificates
        self._unsubscribe = (
            certificates.subscribe(self._certificate_changed) if certificates is not None else None
        )
        #: The caller's locality (bootstrap node), handed to each service for zone-aware routing.
        self.local_locality = local_locality
        #: Per-cluster thresholds, retry budgets and degraded marks, shared by every service.
        self.cluster_resilience = ClusterResilienceRegistry()
        self.ready_timeout_s = ready_timeout_s
        self._lock = threading.Lock()
        self._services: dict[str, ServiceState] = {}
        self._membership: Membership | None = None
        self._closed = False

    def membership(self) -> Membership:
        """The mesh's service set, starting its wildcard LDS watch on first use."""
        membership = self._membership
        if membership is not None:
            return membership
        with self._lock:
            if self._closed:
                raise RuntimeError("the mesh is closed")
            if self._membership is None:
                membership = Membership()
                membership.cancel = self._source_factory().watch_all(LISTENER, membership)
                self._membership = membership
            return self._membership

    def is_member(self, target: str, timeout: float | None = None) -> bool:
        """Whether ``HOST:PORT`` is a mesh service; waits (up to ``timeout``, default the
        ready timeout) only until the first service list arrives: ServiceNotReadyError."""
        wait = self.ready_timeout_s if timeout is None else timeout
        return self.membership().contains(target, wait)

    async def is_member_async(self, target: str, timeout: float | None = None) -> bool:
        wait = self.ready_timeout_s if timeout is None else timeout
        return await self.membership().contains_async(target, wait)

    def known_member(self, target: str) -> bool:
        """True when the service list is known and holds ``target`` (no waiting)."""
        names = self._membership.names if self._membership is not None else None
        return names is not None and target in names

    def known_non_member(self, target: str) -> bool:
        """True when the service list is known and ``target`` is not in it (no waiting)."""
        names = self._membership.names if self._membership is not None else None
        return names is not None and target not in names

    def ports_of(self, host: str) -> list[int] | None:
        """The ports ``host`` is a mesh service on (None while the service list is not
        known): names what the mesh has when a request missed it."""
        names = self._membership.names if self._membership is not None else None
        if names is None:
            return None
        found = (name.rpartition(":") for name in names)
        return sorted(int(port) for name, _, port in found if name == host and port.isdigit())

    def service(self, target: str) -> ServiceState:
        """The state for ``HOST:PORT``, starting its watches on first use.

        Membership is started first, so the xDS client asks for ``"*"`` before any
        named listener: a name outside the mesh then fails at once (ServiceNotFoundError).
        """
        state = self._services.get(target)
        if state is not None:
            return state
        self.membership()
        with self._lock:
            if self._closed:
                raise RuntimeError("the mesh is closed")
            state = self._services.get(target)
            if state is None:
                state = ServiceState(
                    target,
                    self._source_factory(),
                    local_locality=self.local_locality,
                    cluster_resilience=self.cluster_resilience,
                    certificates=self.certificates,
                )
                self._services[target] = state
        return state

    def _certificate_changed(self, _certificate: object) -> None:
        for state in self.services():
            state.certificate_changed()

    def services(self) -> Iterable[ServiceState]:
        with self._lock:
            return list(self._services.values())

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        with self._lock:
            self._closed = True
            states = list(self._services.values())
            self._services.clear()
            membership, self._membership = self._membership, None
        if membership is not None:
            membership.cancel()
        for state in states:
            state.close()
