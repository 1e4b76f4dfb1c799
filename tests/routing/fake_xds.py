"""An in-memory xDS feed with the XdsClient's watch contract (tests only).

Resources are set and removed by the test; watchers are told on one delivery
thread, in order, as the real client does. ``active()`` shows what is being
watched, so tests can assert that watches are cancelled.

Wildcard watchers (``watch_all``) get the whole ``{name: resource}`` world of
their type at once and after every change, unless the test holds it back
(``hold_wildcard=True`` until ``release_wildcard()``): like the real client,
while a wildcard world is known a named watch of a name outside it is told
"does not exist" at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from functools import partial
from types import MappingProxyType
from typing import Any

from meshlib.errors import XdsConnectionError, XdsResourceNotFound
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG
from meshlib.xds_client.watchers import CancelWatch

KINDS = {"lds": LISTENER, "rds": ROUTE_CONFIG, "cds": CLUSTER, "eds": ENDPOINTS}
_Key = tuple[Any, str]


class FakeXds:
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

    def flush(self) -> None:
        """Wait until every queued callback has run."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

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
        with self._lock:
            return bool(self._wildcard_watchers.get(KINDS[kind]))

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

    def active(self, kind: str) -> set[str]:
        """Names of resources of ``kind`` (lds/rds/cds/eds) with at least one watcher."""
        rtype = KINDS[kind]
        with self._lock:
            return {name for (t, name), ws in self._watchers.items() if t is rtype and ws}

    def set(self, kind: str, name: str, resource: object) -> None:
        key = (KINDS[kind], name)
        with self._lock:
            self._resources[key] = resource
            self._absent.discard(key)
            self._publish_world(key[0])
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_changed, resource))

    def remove(self, kind: str, name: str) -> None:
        key = (KINDS[kind], name)
        error = XdsResourceNotFound(f"{name} does not exist")
        with self._lock:
            self._resources.pop(key, None)
            self._absent.add(key)
            self._publish_world(key[0])  # as the real client: wildcard watchers hear first
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_resource_error, error))

    def ambient(self, kind: str, name: str) -> None:
        key = (KINDS[kind], name)
        error = XdsConnectionError("stream broke")
        with self._lock:
            for watcher in list(self._watchers.get(key, [])):
                self._queue.put(partial(watcher.on_ambient_error, error))

    def wildcard_ambient(self, kind: str) -> None:
        """Tell the wildcard watchers of ``kind`` the stream broke (as before a first answer)."""
        error = XdsConnectionError("stream broke")
        with self._lock:
            for watcher in list(self._wildcard_watchers.get(KINDS[kind], [])):
                self._queue.put(partial(watcher.on_ambient_error, error))

    def set_service(
        self, target: str, cluster_endpoints: dict[str, object], *, domains: tuple[str, ...] = ()
    ) -> None:
        """A whole service: LDS ``target`` → RDS ``target-routes`` → one prefix-/ route per
        cluster (first cluster gets ``/``, others ``/<cluster>``) → CDS → EDS."""
        from tests.routing.builders import eds_cluster, listener, prefix_route, route_config

        names = list(cluster_endpoints)
        routes = [prefix_route(f"/{n}", n) for n in names[1:]] + [prefix_route("/", names[0])]
        host = target.rsplit(":", 1)[0]
        self.set(
            "rds",
            f"{target}-routes",
            route_config(f"{target}-routes", domains or (target, host), *routes),
        )
        for name, eds in cluster_endpoints.items():
            self.set("cds", name, eds_cluster(name))
            self.set("eds", name, eds)
        self.set("lds", target, listener(target, f"{target}-routes"))
