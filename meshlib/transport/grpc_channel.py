"""``MeshChannel``: a ``grpc.Channel`` for ``xds:///HOST:PORT`` that picks per call.

grpcio has no pluggable load balancer, so the channel keeps one plain
sub-channel per endpoint (created on first use, closed when the endpoint
leaves EDS) and each call is routed and balanced before it is handed to the
chosen sub-channel's own multicallable. Routing failures raise
:class:`~meshlib.transport.grpc_errors.MeshRpcError` (UNAVAILABLE).

One call: ``plan`` (pure: route, cluster, hash, metadata mutations,
mirrors) → mirrors (unary-unary calls only: a streamed request cannot be
replayed) → the call plan of its (route, cluster) runs the lifecycle, each try
to one endpoint's sub-channel (``sub_channel``; :mod:`meshlib.transport.grpc_try`).
The multicallables are in :mod:`meshlib.transport.grpc_calls`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

import grpc

from meshlib.errors import RoutingError
from meshlib.routing.connection_pool import PoolSettings
from meshlib.routing.plan import ForwardPlan, MirrorTarget
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot, ServiceView
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_calls import StreamStream, StreamUnary, UnaryStream, UnaryUnary
from meshlib.transport.grpc_errors import MeshRpcError
from meshlib.transport.grpc_routing import (
    ChannelOptions,
    GrpcRouting,
    Metadata,
    MethodPlanCache,
    outgoing_metadata,
)
from meshlib.transport.grpc_subchannels import SubChannels
from meshlib.transport.mirror import MirrorStats, ThreadMirror
from meshlib.transport.pool_settings import open_endpoint_channel
from meshlib.transport.services import MeshServices
from meshlib.xds_client.resources import Endpoint

Kind = str  # "unary_unary" | "unary_stream" | "stream_unary" | "stream_stream"
Connectivity = Callable[[grpc.ChannelConnectivity], None]
_NO_EXCLUSIONS: frozenset[str] = frozenset()


class MeshChannel(grpc.Channel):
    """A sync gRPC channel over every endpoint of one mesh service."""

    def __init__(self, mesh: MeshServices, target: str, options: ChannelOptions = ()) -> None:
        self._routing = routing = GrpcRouting(mesh.directory, mesh.ready_timeout_s, target)
        user_options = list(options)
        self._subs: SubChannels[grpc.Channel] = SubChannels(
            routing.state,
            routing.target,
            lambda ep, authority, settings: open_endpoint_channel(
                grpc, ep, routing.sub_channel_options(user_options, authority, settings), settings
            ),
            _close_channels,
        )
        self._mirrors = ThreadMirror()
        self._subscribers: list[Connectivity] = []
        self._lock = threading.Lock()
        #: Whether :meth:`close` was called (read-only).
        self.closed = False
        self.target = routing.target

    # --- routing (per call) ----------------------------------------------------

    @property
    def routing(self) -> GrpcRouting:
        """The channel's routing (its multicallables plan and pick with it)."""
        return self._routing

    def plan(
        self, method: str, metadata: Metadata | None, cache: MethodPlanCache | None = None
    ) -> tuple[ServiceSnapshot, ForwardPlan]:
        """The snapshot and forward plan of one call (waits for a first snapshot).
        Raises MeshRpcError."""
        routing = self._routing
        try:
            snapshot = routing.state.snapshot(routing.timeout)
            return snapshot, routing.decide(snapshot, method, metadata, cache)
        except RoutingError as exc:
            raise MeshRpcError(routing.describe(exc)) from exc

    def _pick(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        cluster_name: str,
        authority: str,
        excluded: frozenset[str] = _NO_EXCLUSIONS,
    ) -> tuple[ClusterState, Endpoint, grpc.Channel]:
        routing = self._routing
        try:
            cluster, endpoint = routing.pick(snapshot, cluster_name, plan.request_hash, excluded)
            return cluster, endpoint, self._subs.get(endpoint, authority, cluster.pool)
        except RoutingError as exc:
            raise MeshRpcError(routing.describe(exc)) from exc
        except RuntimeError as exc:  # closed
            raise MeshRpcError(routing.describe(exc)) from exc

    def sub_channel(
        self, endpoint: Endpoint, authority: str, settings: PoolSettings
    ) -> grpc.Channel:
        """The sub-channel for one try. Raises MeshRpcError once the channel is closed."""
        try:
            return self._subs.get(endpoint, authority, settings)
        except RuntimeError as exc:  # closed
            raise MeshRpcError(self._routing.describe(exc)) from exc

    def mirror(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        method: str,
        request: Any,
        options: CallOptions,
        serializer: Callable[[Any], bytes] | None,
    ) -> None:
        for mirror in plan.mirrors:
            self._mirrors.submit(
                partial(self._shadow, snapshot, plan, mirror, method, request, options, serializer)
            )

    def _shadow(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        mirror: MirrorTarget,
        method: str,
        request: Any,
        options: CallOptions,
        serializer: Callable[[Any], bytes] | None,
    ) -> None:
        cluster, endpoint, sub = self._pick(snapshot, plan, mirror.cluster, mirror.authority)
        call = sub.unary_unary(plan.path, request_serializer=serializer, response_deserializer=None)
        options = options._replace(metadata=outgoing_metadata(plan, options.metadata))
        report = self._routing.observer(cluster).start(endpoint, method)
        try:
            options.send(call, request)
        except grpc.RpcError as exc:
            call_error = exc if isinstance(exc, grpc.Call) else None
            report.finished(
                call_error.code() if call_error else None,
                call_error.details() if call_error else None,
            )
            raise
        report.finished(grpc.StatusCode.OK)

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self._subs.default.authorities()

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
        return UnaryUnary(self, "unary_unary", method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return UnaryStream(self, "unary_stream", method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return StreamUnary(self, "stream_unary", method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return StreamStream(
            self, "stream_stream", method, request_serializer, response_deserializer
        )

    def subscribe(self, callback: Connectivity, try_to_connect: bool = False) -> None:
        """Connectivity of the service as a whole: READY once a snapshot routes,
        TRANSIENT_FAILURE while it is unavailable, CONNECTING before."""
        with self._lock:
            first = not self._subscribers
            self._subscribers.append(callback)
        if first:
            self._routing.state.add_listener(self._on_view)
        state = _connectivity(self._routing.state.view)
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
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._subscribers.clear()
        self._routing.state.remove_listener(self._on_view)
        self._mirrors.close()
        _close_channels(self._subs.drain())

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
