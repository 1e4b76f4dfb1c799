"""``MeshChannel``: a ``grpc.Channel`` for ``xds:///HOST:PORT`` that picks per call.

grpcio has no pluggable load balancer, so the channel keeps one plain
sub-channel per endpoint (created on first use, closed when the endpoint
leaves EDS) and each call is routed and balanced before it is handed to the
chosen sub-channel's own multicallable. Routing failures raise
:class:`~meshlib.transport.grpc_errors.MeshRpcError` (UNAVAILABLE).

One call: the plan (pure: route, cluster, hash, metadata mutations,
mirrors) → mirrors (unary-unary calls only: a streamed request cannot be
replayed) → the call plan of its (route, cluster) runs the lifecycle, each try
to one endpoint's sub-channel (:mod:`meshlib.transport.grpc_try`). The
multicallables are in :mod:`meshlib.transport.grpc_calls`; what they share with
the channel (routing, plan, sub-channels, mirrors) is its
:class:`~meshlib.transport.grpc_channel_core.ChannelCore`, not its public surface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.transport.grpc_calls import StreamStream, StreamUnary, UnaryStream, UnaryUnary
from meshlib.transport.grpc_channel_core import ChannelCore
from meshlib.transport.grpc_routing import ChannelOptions
from meshlib.transport.mirror import MirrorStats, ThreadMirror
from meshlib.transport.services import MeshServices

Connectivity = Callable[[grpc.ChannelConnectivity], None]


class MeshChannel(grpc.Channel):
    """A sync gRPC channel over every endpoint of one mesh service (``grpc.Channel``'s
    surface, plus :meth:`endpoint_channels` and :meth:`mirror_stats`)."""

    def __init__(self, mesh: MeshServices, target: str, options: ChannelOptions = ()) -> None:
        self._mirrors = ThreadMirror()
        self._core: ChannelCore[grpc.Channel] = ChannelCore(
            mesh, target, options, grpc, _close_channels, self._mirrors, aio=False
        )
        self._subscribers: list[Connectivity] = []
        self._lock = threading.Lock()

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self._core.endpoint_channels()

    def mirror_stats(self) -> MirrorStats:
        """Counters of shadow calls sent by this channel."""
        return self._mirrors.stats

    # --- grpc.Channel ----------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return UnaryUnary(
            self._core, "unary_unary", method, request_serializer, response_deserializer
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return UnaryStream(
            self._core, "unary_stream", method, request_serializer, response_deserializer
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return StreamUnary(
            self._core, "stream_unary", method, request_serializer, response_deserializer
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return StreamStream(
            self._core, "stream_stream", method, request_serializer, response_deserializer
        )

    def subscribe(self, callback: Connectivity, try_to_connect: bool = False) -> None:
        """Connectivity of the service as a whole: READY once a snapshot routes,
        TRANSIENT_FAILURE while it is unavailable, CONNECTING before."""
        with self._lock:
            first = not self._subscribers
            self._subscribers.append(callback)
        if first:
            self._core.routing.state.add_listener(self._on_view)
        state = _connectivity(self._core.routing.state.view)
        threading.Thread(target=callback, args=(state,), daemon=True).start()

    def unsubscribe(self, callback: Connectivity) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def _on_view(self, view: ServiceView) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        state = _connectivity(view)
        for callback in subscribers:
            callback(state)

    def close(self) -> None:
        core = self._core
        with self._lock:
            if core.closed:
                return
            core.closed = True
            self._subscribers.clear()
        core.routing.state.remove_listener(self._on_view)
        self._mirrors.close()
        _close_channels(core.subs.drain())

    def __enter__(self) -> MeshChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        return None


def _connectivity(view: ServiceView | None) -> grpc.ChannelConnectivity:
    if view is None:
        return grpc.ChannelConnectivity.CONNECTING
    if isinstance(view, ServiceSnapshot):
        return grpc.ChannelConnectivity.READY
    return grpc.ChannelConnectivity.TRANSIENT_FAILURE


def _close_channels(channels: list[grpc.Channel]) -> None:
    for channel in channels:
        channel.close()
