"""Test your own code against a fake mesh: an in-memory xDS feed, no control plane.

:class:`FakeXds` keeps the xDS client's watch contract (watchers are told on one
delivery thread, in order, as the real client does), so a ``Mesh`` built on it
routes, balances, retries and fails exactly as one fed by a control plane. You
declare services with :meth:`FakeXds.set_service` (or resource by resource with
:meth:`FakeXds.set`, using the small builders below and the models in
:mod:`meshlib.xds_client.resources`), and change or remove them while the test runs::

    with FakeXds() as xds, xds.mesh() as mesh:
        xds.set_service("reviews:8080", {"reviews": [f"127.0.0.1:{port}"]})
        with mesh.http_client() as http:
            assert http.get("http://reviews:8080/reviews/42").status_code == 200

Wildcard watchers (``watch_all``, how a ``Mesh`` learns which names are mesh
services) get the whole ``{name: resource}`` world of their type at once and after
every change, unless held back (``hold_wildcard=True`` until
:meth:`FakeXds.release_wildcard`): as with the real client, while a wildcard world
is known a named watch of a name outside it is told "does not exist" at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import MappingProxyType, TracebackType
from typing import Any

from meshlib.errors import XdsConnectionError, XdsResourceNotFound
from meshlib.mesh import Mesh
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    ListenerResource,
    Locality,
    LocalityEndpoints,
    PathMatchKind,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)
from meshlib.xds_client.watchers import CancelWatch

__all__ = [
    "KINDS",
    "FakeXds",
    "eds_cluster",
    "endpoints",
    "listener",
    "prefix_route",
    "route_config",
]

#: The resource kinds, as :meth:`FakeXds.set` names them, and their xDS types.
KINDS = {"lds": LISTENER, "rds": ROUTE_CONFIG, "cds": CLUSTER, "eds": ENDPOINTS}
_MODELS: dict[str, type] = {
    "lds": ListenerResource,
    "rds": RouteConfigResource,
    "cds": ClusterResource,
    "eds": EndpointsResource,
}
_Key = tuple[Any, str]
Address = str | tuple[str, int]

# --- builders -----------------------------------------------------------------------


def _address(value: Address) -> tuple[str, int]:
    if isinstance(value, tuple):
        host, port = value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"endpoint {value!r}: expected HOST:PORT")
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"endpoint {value!r}: expected a host and a port in 1-65535")
    return host, port


def endpoints(
    cluster: str,
    addresses: Iterable[Address],
    *,
    priority: int = 0,
    zone: str = "z1",
    weight: int = 1,
    health: HealthStatus = HealthStatus.HEALTHY,
) -> EndpointsResource:
    """The EDS resource of ``cluster``: ``addresses`` (``"HOST:PORT"`` or ``(host, port)``)
    in one locality (region ``r``, ``zone``) at ``priority``."""
    if isinstance(addresses, (str, bytes)) or not isinstance(addresses, Iterable):
        raise TypeError(
            f"endpoints of {cluster!r}: expected a list of 'HOST:PORT', got {addresses!r}"
        )
    found = tuple(Endpoint(host, port, health) for host, port in map(_address, addresses))
    return EndpointsResource(
        cluster, (LocalityEndpoints(Locality("r", zone), weight, priority, found),)
    )


def prefix_route(prefix: str, cluster: str, name: str = "") -> Route:
    """A route sending paths that start with ``prefix`` to ``cluster``."""
    return Route(
        name or f"{prefix}->{cluster}",
        RouteMatch(PathMatchKind.PREFIX, prefix),
        RouteAction(cluster=cluster),
    )


def route_config(name: str, domains: tuple[str, ...], *routes: Route) -> RouteConfigResource:
    """A route configuration with one virtual host for ``domains``."""
    return RouteConfigResource(name, (VirtualHost(f"{name}-vh", domains, tuple(routes)),))


def listener(name: str, rds: str) -> ListenerResource:
    """A listener (``HOST:PORT``) whose routes are the route configuration ``rds``."""
    return ListenerResource(name=name, route_config_name=rds, route_config=None)


def eds_cluster(name: str) -> ClusterResource:
    """A round-robin cluster whose endpoints come from EDS resource ``name``."""
    return ClusterResource(name=name, type=ClusterType.EDS, eds_service_name=name)


# --- the feed -----------------------------------------------------------------------


def _kind(kind: str) -> Any:
    if kind not in KINDS:
        raise ValueError(f"resource kind {kind!r}: expected one of {', '.join(KINDS)}")
    return KINDS[kind]


class FakeXds:
    """An in-memory xDS feed a ``Mesh`` can be built on (:meth:`mesh`)."""

    def __init__(self, *, hold_wildcard: bool = False) -> None:
        self._lock = threading.Lock()
        self._resources: dict[_Key, object] = {}
        self._absent: set[_Key] = set()
        self._watchers: dict[_Key, list[Any]] = {}
        self._wildcard_watchers: dict[Any, list[Any]] = {}
        self._hold_wildcard = hold_wildcard
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver, name="fake-xds", daemon=True)
        self._thread.start()

    def _deliver(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            finally:
                self._queue.task_done()

    def mesh(self, *, ready_timeout_s: float = 5.0) -> Mesh:
        """A ``Mesh`` fed by this fake (close it before the fake; it does not close us)."""
        return Mesh.with_xds_client(self, ready_timeout_s=ready_timeout_s)

    def flush(self) -> None:
        """Wait until every queued callback has run."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeXds:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the xDS client's watch contract ------------------------------------------

    def watch(self, resource_type: Any, name: str, watcher: Any) -> CancelWatch:
        key = (resource_type, name)
        with self._lock:
            self._watchers.setdefault(key, []).append(watcher)
            if key in self._resources:
                self._queue.put(partial(watcher.on_changed, self._resources[key]))
            elif key in self._absent or self._world_known(resource_type):
                error = XdsResourceNotFound(f"{name} does not exist")
                self._queue.put(lambda: watcher.on_resource_error(error))

        def cancel() -> None:
            with self._lock:
                watchers = self._watchers.get(key, [])
                if watcher in watchers:
                    watchers.remove(watcher)

        return cancel

    def watch_all(self, resource_type: Any, watcher: Any) -> CancelWatch:
        with self._lock:
            self._wildcard_watchers.setdefault(resource_type, []).append(watcher)
            if not self._hold_wildcard:
                self._queue.put(partial(watcher.on_changed, self._world(resource_type)))

        def cancel() -> None:
            with self._lock:
                watchers = self._wildcard_watchers.get(resource_type, [])
                if watcher in watchers:
                    watchers.remove(watcher)

        return cancel

    def release_wildcard(self) -> None:
        """Send the wildcard worlds held back by ``hold_wildcard=True``."""
        with self._lock:
            self._hold_wildcard = False
            for rtype in self._wildcard_watchers:
                self._publish_world(rtype)

    def wildcard_active(self, kind: str) -> bool:
        """Whether anything watches every resource of ``kind``."""
        with self._lock:
            return bool(self._wildcard_watchers.get(_kind(kind)))

    def _world(self, rtype: Any) -> MappingProxyType[str, object]:
        return MappingProxyType({n: r for (t, n), r in self._resources.items() if t is rtype})

    def _world_known(self, rtype: Any) -> bool:
        return not self._hold_wildcard and bool(self._wildcard_watchers.get(rtype))

    def _publish_world(self, rtype: Any) -> None:
        if self._hold_wildcard:
            return
        world = self._world(rtype)
        for watcher in list(self._wildcard_watchers.get(rtype, [])):
            self._queue.put(partial(watcher.on_changed, world))

    def served(self, kind: str) -> set[str]:
        """Names of the resources of ``kind`` (lds/rds/cds/eds) the fake holds."""
        rtype = _kind(kind)
        with self._lock:
            return {name for (t, name) in self._resources if t is rtype}

    def active(self, kind: str) -> set[str]:
        """Names of resources of ``kind`` (lds/rds/cds/eds) with at least one watcher."""
        rtype = _kind(kind)
        with self._lock:
            return {name for (t, name), ws in self._watchers.items() if t is rtype and ws}

    # --- changing what the fake serves ---------------------------------------------

    def set(self, kind: str, name: str, resource: object) -> None:
        """Add or replace one resource (its watchers are told)."""
        key = (_kind(kind), name)
        model = _MODELS[kind]
        if not isinstance(resource, model):
            got = type(resource).__name__
            raise TypeError(f"{kind} {name!r}: expected a {model.__name__}, got {got}")
        with self._lock:
            self._resources[key] = resource
            self._absent.discard(key)
            self._publish_world(key[0])
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_changed, resource))

    def remove(self, kind: str, name: str) -> None:
        """Remove one resource (its watchers are told it does not exist)."""
        key = (_kind(kind), name)
        error = XdsResourceNotFound(f"{name} does not exist")
        with self._lock:
            self._resources.pop(key, None)
            self._absent.add(key)
            self._publish_world(key[0])  # as the real client: wildcard watchers hear first
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_resource_error, error))

    def ambient(self, kind: str, name: str) -> None:
        """Tell the watchers of one resource the stream broke (they keep what they have)."""
        key = (_kind(kind), name)
        error = XdsConnectionError("stream broke")
        with self._lock:
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_ambient_error, error))

    def wildcard_ambient(self, kind: str) -> None:
        """Tell the wildcard watchers of ``kind`` the stream broke (as before a first answer)."""
        error = XdsConnectionError("stream broke")
        with self._lock:
            for watcher in list(self._wildcard_watchers.get(_kind(kind), [])):
                self._queue.put(partial(watcher.on_ambient_error, error))

    def set_service(
        self,
        target: str,
        cluster_endpoints: Mapping[str, EndpointsResource | Sequence[Address]],
        *,
        domains: tuple[str, ...] = (),
        routes: Sequence[Route] | None = None,
    ) -> None:
        """A whole service ``HOST:PORT``: LDS ``target`` -> RDS ``target-routes`` ->
        ``routes`` (default: one prefix route per cluster, the first cluster ``/``, the
        others ``/<cluster>``) -> a CDS and an EDS resource per cluster. A cluster's
        endpoints are an :func:`endpoints` resource or a list of addresses."""
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"service {target!r}: expected HOST:PORT (e.g. reviews:8080)")
        if not isinstance(cluster_endpoints, Mapping):
            got = type(cluster_endpoints).__name__
            raise TypeError(f"service {target!r}: expected {{cluster: endpoints}}, got {got}")
        if not cluster_endpoints:
            raise ValueError(f"service {target!r}: give at least one cluster")
        names = list(cluster_endpoints)
        if routes is not None:
            for route in routes:
                if not isinstance(route, Route):
                    got = type(route).__name__
                    raise TypeError(f"service {target!r}: routes: expected a Route, got {got}")
        else:
            routes = [prefix_route(f"/{n}", n) for n in names[1:]] + [prefix_route("/", names[0])]
        config = route_config(f"{target}-routes", domains or (target, host), *routes)
        unknown = sorted(config.cluster_names() - set(names))
        if unknown:
            raise ValueError(f"service {target!r}: routes name clusters not given: {unknown}")
        resolved = {  # all built before anything is set: bad input applies nothing
            name: found if isinstance(found, EndpointsResource) else endpoints(name, found)
            for name, found in cluster_endpoints.items()
        }
        self.set("rds", f"{target}-routes", config)
        for name, eds in resolved.items():
            self.set("cds", name, eds_cluster(name))
            self.set("eds", name, eds)
        self.set("lds", target, listener(target, f"{target}-routes"))

    def remove_service(self, target: str) -> None:
        """Take ``target`` out of the mesh (its listener goes; a request to it then
        passes through, or fails as a name the mesh does not know)."""
        self.remove("lds", target)
