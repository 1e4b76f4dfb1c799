"""One mesh service (``HOST:PORT``): follows LDS → RDS → CDS → EDS and
publishes an immutable :class:`ServiceSnapshot` for the request path.

All watch bookkeeping happens under one lock on the xDS client's thread; the
request path only reads ``ServiceState.view`` (one reference). A new snapshot
is published only when every cluster the routes name is resolved (endpoints
or a definite error), so a config change never routes to a half-known cluster
(make before break). Resource-does-not-exist makes the service unavailable;
ambient errors keep the last good snapshot (fail static).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from meshlib.balancing.runtime import ClusterRuntime
from meshlib.errors import (
    RoutingError,
    ServiceNotFoundError,
    ServiceNotReadyError,
    XdsError,
    XdsResourceNotFound,
)
from meshlib.observability.logging import get_logger
from meshlib.resilience.route_resilience import ResilienceCompiler, ServiceResilience
from meshlib.resilience.xds_cluster import ClusterResilience, ClusterResilienceRegistry
from meshlib.routing._route_table import RouteTable
from meshlib.routing.snapshot import (
    ClusterState,
    ServiceFailure,
    ServiceSnapshot,
    ServiceView,
    build_cluster_state,
    failed_cluster,
)
from meshlib.routing.watch import Watch, WatchSource
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    EndpointsResource,
    ListenerResource,
    Locality,
    RouteConfigResource,
)

if TYPE_CHECKING:
    from meshlib.security.keeper import CertificateKeeper

log = get_logger(__name__)

ViewListener = Callable[[ServiceView], None]


class ServiceState:
    """Watches one service's resources and keeps its current view."""

    def __init__(
        self,
        target: str,
        source: WatchSource,
        *,
        local_locality: Locality | None = None,
        cluster_resilience: ClusterResilienceRegistry | None = None,
        certificates: CertificateKeeper | None = None,
    ) -> None:
        self.target = target
        #: The workload certificate clusters with mTLS present (None: no identity).
        self._certificates = certificates
        #: Per-cluster thresholds / budgets / degraded marks, shared by the mesh's services.
        self._cluster_resilience = cluster_resilience or ClusterResilienceRegistry()
        self._compiler = ResilienceCompiler(target)
        self._compiled: tuple[object, object, ServiceResilience] | None = None
        #: The caller's own locality (bootstrap node), for zone-aware routing.
        self.local_locality = local_locality
        self._source = source
        self._lock = threading.RLock()
        self._settled = threading.Event()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._listeners: list[ViewListener] = []
        self._closed = False
        self._version = 0
        #: The published view; None until the first snapshot or failure.
        self.view: ServiceView | None = None
        self._listener_res: ListenerResource | None = None
        self._route_config: RouteConfigResource | None = None
        self._table: RouteTable | None = None
        self._rds: Watch | None = None
        self._cds: dict[str, Watch] = {}
        self._clusters: dict[str, ClusterResource] = {}
        self._cluster_errors: dict[str, str] = {}
        self._eds: dict[str, Watch] = {}
        self._endpoints: dict[str, EndpointsResource] = {}
        self._eds_errors: dict[str, str] = {}
        self._cluster_states: dict[str, ClusterState] = {}
        #: Per-cluster runtime (active requests, ejections, slow start) across rebuilds.
        self._runtimes: dict[str, ClusterRuntime] = {}
        self._lds = self._start(LISTENER, "listener", target)

    # --- reading --------------------------------------------------------------

    def add_listener(self, listener: ViewListener) -> None:
        """Call ``listener(view)`` (on the xDS thread) after every published change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: ViewListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def snapshot(self, timeout: float) -> ServiceSnapshot:
        """The current snapshot, waiting up to ``timeout`` for the first one."""
        view = self.view
        if view is None:
            view = self.wait_settled(timeout)
        if type(view) is ServiceSnapshot:
            return view
        assert isinstance(view, ServiceFailure)
        raise view.error()

    async def snapshot_async(self, timeout: float) -> ServiceSnapshot:
        view = self.view
        if view is None:
            view = await self.wait_settled_async(timeout)
        if type(view) is ServiceSnapshot:
            return view
        assert isinstance(view, ServiceFailure)
        raise view.error()

    def wait_ready(self, timeout: float) -> ServiceSnapshot:
        """Block until the first snapshot; raise ServiceNotReadyError or the failure."""
        return self.snapshot(timeout)

    async def wait_ready_async(self, timeout: float) -> ServiceSnapshot:
        return await self.snapshot_async(timeout)

    def wait_settled(self, timeout: float) -> ServiceView:
        """The first view (snapshot or failure); ServiceNotReadyError after ``timeout``."""
        if not self._settled.wait(timeout):
            raise self._not_ready(timeout)
        view = self.view
        assert view is not None
        return view

    async def wait_settled_async(self, timeout: float) -> ServiceView:
        if self.view is None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                settled = self.view is not None
                if not settled:
                    self._async_waiters.append((loop, future))
            if not settled:
                try:
                    await asyncio.wait_for(future, timeout)
                except asyncio.TimeoutError:
                    raise self._not_ready(timeout) from None
        view = self.view
        assert view is not None
        return view

    def _not_ready(self, timeout: float) -> ServiceNotReadyError:
        return ServiceNotReadyError(
            f"service {self.target}: no xDS config after {timeout:g}s "
            f"(is the control plane reachable, and does it know {self.target!r}?)"
        )

    def close(self) -> None:
        """Cancel every watch; the last view stays readable."""
        with self._lock:
            self._closed = True
            watches = [self._lds, self._rds, *self._cds.values(), *self._eds.values()]
            self._rds = None
            self._cds.clear()
            self._eds.clear()
            self._listeners.clear()
        for watch in watches:
            if watch is not None:
                watch.stop()

    # --- watch bookkeeping (xDS thread) ----------------------------------------

    def _start(self, resource_type: Any, kind: str, name: str) -> Watch:
        watch = Watch(self, kind, name)
        watch.cancel = self._source.watch(resource_type, name, watch)
        return watch

    def watch_changed(self, watch: Watch, resource: object) -> None:
        with self._lock:
            if self._closed or not watch.active:
                return
            if isinstance(resource, ListenerResource):
                self._listener_changed(resource)
            elif isinstance(resource, RouteConfigResource):
                self._set_route_config(resource)
            elif isinstance(resource, ClusterResource):
                self._cluster_errors.pop(watch.name, None)
                self._clusters[watch.name] = resource
                self._sync_eds_watches()
            elif isinstance(resource, EndpointsResource):
                self._eds_errors.pop(watch.name, None)
                self._endpoints[watch.name] = resource
            else:
                log.error("xds_unexpected_resource", service=self.target, kind=type(resource))
                return
            self._rebuild()

    def watch_failed(self, watch: Watch, error: XdsError) -> None:
        with self._lock:
            if self._closed or not watch.active:
                return
            log.warning(
                "xds_resource_error",
                service=self.target,
                kind=watch.kind,
                name=watch.name,
                error=str(error),
            )
            if watch.kind == "listener":
                self._forget_routes()
                error_type: type[RoutingError] = (
                    ServiceNotFoundError if isinstance(error, XdsResourceNotFound) else RoutingError
                )
                self._publish(
                    ServiceFailure(
                        self.target,
                        error_type,
                        f"service {self.target} is not available: listener: {error}",
                    )
                )
                return
            if watch.kind == "route_config":
                self._route_config = None
                self._table = None
                self._publish(
                    ServiceFailure(
                        self.target,
                        RoutingError,
                        f"service {self.target} is not available: route config: {error}",
                    )
                )
                return
            if watch.kind == "cluster":
                self._clusters.pop(watch.name, None)
                self._cluster_errors[watch.name] = str(error)
                self._sync_eds_watches()
            else:
                self._endpoints.pop(watch.name, None)
                self._eds_errors[watch.name] = str(error)
            self._rebuild()

    def _listener_changed(self, listener: ListenerResource) -> None:
        self._listener_res = listener
        if listener.route_config is not None:
            if self._rds is not None:
                self._rds.stop()
                self._rds = None
            self._set_route_config(listener.route_config)
            return
        name = listener.route_config_name
        if name is None:  # the model guarantees one of the two; be explicit anyway
            self._publish(
                ServiceFailure(self.target, RoutingError, f"listener {listener.name!r}: no routes")
            )
            return
        if self._rds is None or self._rds.name != name:
            if self._rds is not None:
                self._rds.stop()
            # The old table keeps serving until the new one and its clusters arrive.
            self._route_config = None
            self._rds = self._start(ROUTE_CONFIG, "route_config", name)

    def _set_route_config(self, config: RouteConfigResource) -> None:
        try:
            table = RouteTable(config)
        except (ValueError, ImportError) as exc:
            log.error("route_table_rejected", service=self.target, error=str(exc))
            if not isinstance(self.view, ServiceSnapshot):
                self._publish(
                    ServiceFailure(self.target, RoutingError, f"service {self.target}: {exc}")
                )
            return
        self._route_config, self._table = config, table
        wanted = config.cluster_names()
        for name in list(self._cds):
            if name not in wanted:
                self._cds.pop(name).stop()
                self._clusters.pop(name, None)
                self._cluster_errors.pop(name, None)
                self._cluster_states.pop(name, None)
                self._runtimes.pop(name, None)
        for name in sorted(wanted):
            if name not in self._cds:
                self._cds[name] = self._start(CLUSTER, "cluster", name)
        self._sync_eds_watches()

    def _sync_eds_watches(self) -> None:
        wanted = {c.eds_service_name for c in self._clusters.values() if c.type is ClusterType.EDS}
        for name in list(self._eds):
            if name not in wanted:
                self._eds.pop(name).stop()
                self._endpoints.pop(name, None)
                self._eds_errors.pop(name, None)
        for name in sorted(wanted):
            if name not in self._eds:
                self._eds[name] = self._start(ENDPOINTS, "endpoints", name)

    def _forget_routes(self) -> None:
        for watch in [self._rds, *self._cds.values(), *self._eds.values()]:
            if watch is not None:
                watch.stop()
        self._rds = None
        self._cds.clear()
        self._eds.clear()
        self._listener_res = None
        self._route_config = None
        self._table = None
        self._clusters.clear()
        self._cluster_errors.clear()
        self._endpoints.clear()
        self._eds_errors.clear()
        self._cluster_states.clear()
        self._runtimes.clear()

    # --- publishing -------------------------------------------------------------

    def _resolve_cluster(self, name: str) -> ClusterState | None:
        """The cluster's state, or None while it is still unknown."""
        if name in self._cluster_errors:
            return failed_cluster(name, f"cluster {name!r}: {self._cluster_errors[name]}")
        cluster = self._clusters.get(name)
        if cluster is None:
            return None
        endpoints: EndpointsResource | None = None
        if cluster.type is ClusterType.EDS:
            eds_name = cluster.eds_service_name
            if eds_name in self._eds_errors:
                return failed_cluster(name, f"cluster {name!r}: {self._eds_errors[eds_name]}")
            endpoints = self._endpoints.get(eds_name)
            if endpoints is None:
                return None
        certificate = self._certificates.current() if self._certificates is not None else None
        previous = self._cluster_states.get(name)
        if (
            previous is not None
            and previous.resource is cluster
            and previous.endpoints is endpoints
            and (cluster.tls is None or previous.pool.certificate is certificate)
        ):
            return previous
        runtime = self._runtimes.get(name)
        if runtime is None:
            runtime = ClusterRuntime(name, local_locality=self.local_locality)
            self._runtimes[name] = runtime
        return build_cluster_state(cluster, endpoints, runtime, certificate=certificate)

    def certificate_changed(self) -> None:
        """A rotated workload certificate: clusters with mTLS get new pool settings (new
        endpoint clients present it; the old ones drain)."""
        with self._lock:
            if not self._closed:
                self._rebuild()

    def _rebuild(self) -> None:
        config, table = self._route_config, self._table
        if config is None or table is None:
            return
        states: dict[str, ClusterState] = {}
        for name in config.cluster_names():
            state = self._resolve_cluster(name)
            if state is None:
                return  # wait for it; the previous snapshot keeps serving
            states[name] = state
        resilience = self._route_resilience(config)
        if resilience is None:
            return
        self._cluster_states = dict(states)
        self._version += 1
        authorities = frozenset(a for s in states.values() for a in s.authorities)
        snapshot = ServiceSnapshot(
            self.target,
            table,
            states,
            self._version,
            authorities,
            resilience=resilience,
            cluster_resilience=self._clusters_resilience(states),
        )
        self._publish(snapshot)

    def _route_resilience(self, config: RouteConfigResource) -> ServiceResilience | None:
        """The routes' compiled resilience, rebuilt only when the listener or routes change."""
        listener = self._listener_res
        compiled = self._compiled
        if compiled is not None and compiled[0] is listener and compiled[1] is config:
            return compiled[2]
        filters = listener if listener is not None else _NO_FILTERS
        try:
            resilience = self._compiler.compile(filters, config)
        except ValueError as exc:
            log.error("resilience_config_rejected", service=self.target, error=str(exc))
            if not isinstance(self.view, ServiceSnapshot):
                self._publish(
                    ServiceFailure(self.target, RoutingError, f"service {self.target}: {exc}")
                )
            return None
        self._compiled = (listener, config, resilience)
        return resilience

    def _clusters_resilience(self, states: dict[str, ClusterState]) -> dict[str, ClusterResilience]:
        registry = self._cluster_resilience
        return {
            name: registry.update(state.resource)
            if state.resource is not None
            else registry.get(name)
            for name, state in states.items()
        }

    def _publish(self, view: ServiceView) -> None:
        self.view = view
        log.info(
            "service_view_published",
            service=self.target,
            ok=isinstance(view, ServiceSnapshot),
            version=view.version if isinstance(view, ServiceSnapshot) else None,
        )
        if not self._settled.is_set():
            self._settled.set()
            waiters, self._async_waiters = self._async_waiters, []
            for loop, future in waiters:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(_resolve, future)
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:
                log.exception("service_listener_failed", service=self.target)


# A listener with the router alone (no fault / rate-limit filters), for inline configs.
_NO_FILTERS = ListenerResource(name="", route_config_name="", route_config=None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
