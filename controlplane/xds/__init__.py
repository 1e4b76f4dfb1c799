"""xds: serve the translated mesh over ADS (state of the world and Delta).

:class:`XdsService` is the facade the control plane wires in: register it on
a ``grpc.aio.Server``, check a change first with :meth:`~XdsService.check`,
feed it config and workloads with :meth:`~XdsService.update`, and read
:meth:`~XdsService.clients_status` and :attr:`~XdsService.last_error` for the
status view. Inside: cache (snapshots per node), stream (protocol), server
(servicer), updater (translate per node), debounce (coalesce bursts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc

from controlplane.model import MeshConfig, RegisteredWorkload
from controlplane.translate import TranslationError, translate
from controlplane.translate.ambiguity import AmbiguousDestinationError
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.debounce import Debouncer
from controlplane.xds.errors import InconsistentSnapshotError, SnapshotError
from controlplane.xds.observer import NullObserver, XdsObserver
from controlplane.xds.server import SERVER_OPTIONS, AdsServicer, add_to_server
from controlplane.xds.status import stream_detail, stream_status
from controlplane.xds.updater import SnapshotUpdater, Translate

__all__ = [
    "SERVER_OPTIONS",
    "AmbiguousDestinationError",
    "InconsistentSnapshotError",
    "SnapshotError",
    "TranslationError",
    "XdsService",
]


class XdsService:
    """ADS over gRPC for every node, rebuilt (debounced) when the mesh changes."""

    def __init__(
        self,
        *,
        debounce_s: float = 0.1,
        max_debounce_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        translate_fn: Translate = translate,
        observer: XdsObserver | None = None,
    ) -> None:
        self._observer: XdsObserver = observer or NullObserver()
        self._cache = SnapshotCache()
        self._updater = SnapshotUpdater(self._cache, translate_fn)
        self._servicer = AdsServicer(
            self._cache, self._updater, clock=clock, observer=self._observer
        )
        self._debouncer = Debouncer(self._rebuild, delay_s=debounce_s, max_delay_s=max_debounce_s)
        self._started = False

    def register(self, server: grpc.aio.Server) -> None:
        """Add the AggregatedDiscoveryService to ``server`` (before it starts); create the
        server with :data:`SERVER_OPTIONS` to take a fleet's reconnect burst."""
        add_to_server(self._servicer, server)

    def update(
        self,
        *,
        config: MeshConfig | None = None,
        workloads: Sequence[RegisteredWorkload] | None = None,
    ) -> None:
        """Take new config and/or workloads (None: unchanged); rebuild soon.

        Call on the event loop. The rebuild runs ``debounce_s`` after the last
        update, at most ``max_debounce_s`` after the first of a burst; a config
        change after a quiet ``debounce_s`` is rebuilt at once. Before
        :meth:`start`, the inputs are only stored (nodes that connect get them).
        """
        self._updater.set_inputs(config=config, workloads=workloads)
        if self._started:
            self._observer.change_accepted()
            # A config change was checked whole before it got here: no timer to wait
            # for unless another change was just applied (see .debounce).
            self._debouncer.trigger(at_once=config is not None)

    def check(
        self,
        *,
        config: MeshConfig | None = None,
        workloads: Sequence[RegisteredWorkload] | None = None,
    ) -> None:
        """Raise TranslationError / SnapshotError if these inputs (None: the latest)
        could not be served to a connected node, a proxyless client or a sidecar.

        Changes nothing: call it before :meth:`update` to refuse a bad change whole.
        """
        self._updater.check(config=config, workloads=workloads)

    @property
    def last_error(self) -> str | None:
        """Why the latest rebuild was refused (the last good snapshots stay), or None."""
        return self._updater.last_error

    async def start(self) -> None:
        """Begin rebuilding on updates; applies what arrived before start at once."""
        self._started = True
        self._rebuild()

    def _rebuild(self) -> None:
        self._observer.rebuilt(self._updater.rebuild())

    async def stop(self) -> None:
        """Drop a pending rebuild and end every open stream."""
        self._started = False
        self._debouncer.cancel()
        self._servicer.close_all()

    def clients_status(self) -> list[dict[str, object]]:
        """One entry per open stream (see :mod:`controlplane.xds.status`)."""
        return [stream_status(s) for s in self._servicer.streams()]

    def client_detail(self, node_id: str) -> dict[str, object] | None:
        """What the newest stream of ``node_id`` was sent, or None when it is not connected."""
        streams = [
            s for s in self._servicer.streams() if s.node is not None and s.node.id == node_id
        ]
        if not streams:
            return None
        return {**stream_detail(streams[-1]), "streams": len(streams)}

    def snapshot_versions(self) -> dict[str, dict[str, str]]:
        """node id -> type URL -> version of the node's current snapshot."""
        versions: dict[str, dict[str, str]] = {}
        for node_id in self._cache.node_ids():
            snapshot = self._cache.get(node_id)
            if snapshot is not None:
                versions[node_id] = snapshot.versions()
        return versions
