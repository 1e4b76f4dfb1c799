"""``MeshChannel``: a ``grpc.Channel`` for ``xds:///HOST:PORT`` that picks per call.

grpcio has no pluggable load balancer, so the channel keeps one plain
sub-channel per endpoint (created on first use, closed when the endpoint
leaves EDS) and each call is routed and balanced before it is handed to the
chosen sub-channel's own multicallable. Routing failures raise
:class:`~meshlib.transport.grpc_errors.MeshRpcError` (UNAVAILABLE).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.errors import RoutingError
from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.transport.endpoint_pool import EndpointPool
from meshlib.transport.grpc_errors import MeshRpcError
from meshlib.transport.grpc_routing import ChannelOptions, GrpcRouting, Metadata, _perf_counter
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.mesh import Mesh

Kind = str  # "unary_unary" | "unary_stream" | "stream_unary" | "stream_stream"
Connectivity = Callable[[grpc.ChannelConnectivity], None]


class MeshChannel(grpc.Channel):
    """A sync gRPC channel over every endpoint of one mesh service."""

    def __init__(self, mesh: Mesh, target: str, options: ChannelOptions = ()) -> None:
        self._routing = GrpcRouting(mesh, target)
        sub_options = self._routing.sub_channel_options(options)
        self._pool: EndpointPool[grpc.Channel] = EndpointPool(
            lambda ep: grpc.insecure_channel(ep.authority, options=sub_options), _close_channels
        )
        self._pool.track(self._routing.state)
        self._subscribers: list[Connectivity] = []
        self._lock = threading.Lock()
        self._closed = False
        self.target = self._routing.target

    # --- routing (per call) ----------------------------------------------------

    def _route(self, method: str, metadata: Metadata | None) -> tuple[str, Endpoint, Any]:
        routing = self._routing
        try:
            snapshot = routing.state.snapshot(routing.timeout)
            cluster, endpoint = routing.pick(snapshot, method, metadata)
            channel = self._pool.get(endpoint)
        except RoutingError as exc:
            raise MeshRpcError(routing.describe(exc)) from exc
        except RuntimeError as exc:  # closed
            raise MeshRpcError(f"meshlib: {routing.target}: {exc}") from exc
        return cluster, endpoint, channel

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self._pool.authorities()

    # --- grpc.Channel ----------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return _UnaryUnary(self, "unary_unary", method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return _UnaryStream(self, "unary_stream", method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return _StreamUnary(self, "stream_unary", method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return _StreamStream(
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
            if self._closed:
                return
            self._closed = True
            self._subscribers.clear()
        self._routing.state.remove_listener(self._on_view)
        _close_channels(self._pool.drain())

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


class _MultiCallable:
    """Per method: routes each call, then delegates to the endpoint's own multicallable."""

    __slots__ = ("_cache", "_channel", "_deserializer", "_kind", "_method", "_serializer")

    def __init__(
        self,
        channel: MeshChannel,
        kind: Kind,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._kind = kind
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer
        # endpoint authority -> (sub-channel, its multicallable for this method)
        self._cache: dict[str, tuple[grpc.Channel, Any]] = {}

    def _target(self, metadata: Metadata | None) -> tuple[str, Endpoint, Any]:
        cluster, endpoint, sub = self._channel._route(self._method, metadata)
        cached = self._cache.get(endpoint.authority)
        if cached is None or cached[0] is not sub:
            factory = getattr(sub, self._kind)
            cached = (
                sub,
                factory(
                    self._method,
                    request_serializer=self._serializer,
                    response_deserializer=self._deserializer,
                    _registered_method=True,
                ),
            )
            self._cache[endpoint.authority] = cached
        return cluster, endpoint, cached[1]

    def _record(
        self, started: float, code: grpc.StatusCode | None, cluster: str, ep: Endpoint
    ) -> None:
        self._channel._routing.record(started, self._method, code, cluster, ep)

    def _blocking(self, request: Any, kwargs: dict[str, Any], with_call: bool) -> Any:
        cluster, endpoint, call = self._target(kwargs.get("metadata"))
        started = _perf_counter()
        try:
            result = call.with_call(request, **kwargs) if with_call else call(request, **kwargs)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            self._record(started, code, cluster, endpoint)
            raise
        self._record(started, grpc.StatusCode.OK, cluster, endpoint)
        return result

    def _future(self, request: Any, kwargs: dict[str, Any]) -> Any:
        cluster, endpoint, call = self._target(kwargs.get("metadata"))
        started = _perf_counter()
        future = call.future(request, **kwargs)
        future.add_done_callback(lambda f: self._record(started, f.code(), cluster, endpoint))
        return future

    def _streaming(self, request: Any, kwargs: dict[str, Any]) -> Any:
        cluster, endpoint, call = self._target(kwargs.get("metadata"))
        started = _perf_counter()
        rendezvous = call(request, **kwargs)
        rendezvous.add_done_callback(lambda c: self._record(started, c.code(), cluster, endpoint))
        return rendezvous


def _kwargs(
    timeout: float | None,
    metadata: Metadata | None,
    credentials: grpc.CallCredentials | None,
    wait_for_ready: bool | None,
    compression: grpc.Compression | None,
) -> dict[str, Any]:
    return {
        "timeout": timeout,
        "metadata": metadata,
        "credentials": credentials,
        "wait_for_ready": wait_for_ready,
        "compression": compression,
    }


class _UnaryUnary(_MultiCallable, grpc.UnaryUnaryMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request, kwargs, with_call=False)

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request, kwargs, with_call=True)

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._future(
            request, _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        )


class _UnaryStream(_MultiCallable, grpc.UnaryStreamMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._streaming(
            request, _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        )


class _StreamUnary(_MultiCallable, grpc.StreamUnaryMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request_iterator, kwargs, with_call=False)

    def with_call(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request_iterator, kwargs, with_call=True)

    def future(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._future(
            request_iterator, _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        )


class _StreamStream(_MultiCallable, grpc.StreamStreamMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._streaming(
            request_iterator, _kwargs(timeout, metadata, credentials, wait_for_ready, compression)
        )
