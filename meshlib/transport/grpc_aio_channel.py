"""``AioMeshChannel``: the asyncio twin of :class:`MeshChannel`.

Once the service has a snapshot, a call is routed and picked synchronously
and grpc's own aio call object is returned (no extra task per call); before
that, or when routing fails, a :class:`DeferredCall` stands in. Sub-channels
are ``grpc.aio`` channels, one per endpoint, closed on the event loop when
their endpoint leaves EDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.errors import RoutingError
from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.grpc_aio_deferred import DeferredCall
from meshlib.transport.grpc_errors import aio_unavailable
from meshlib.transport.grpc_routing import ChannelOptions, GrpcRouting, Metadata, _perf_counter
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.mesh import Mesh


class AioMeshChannel(grpc.aio.Channel):
    """An asyncio gRPC channel over every endpoint of one mesh service."""

    def __init__(self, mesh: Mesh, target: str, options: ChannelOptions = ()) -> None:
        self._routing = GrpcRouting(mesh, target)
        sub_options = self._routing.sub_channel_options(options)
        self._closer: LoopCloser[grpc.aio.Channel] = LoopCloser(_close_channel)
        self._pool: EndpointPool[grpc.aio.Channel] = EndpointPool(
            lambda ep: grpc.aio.insecure_channel(ep.authority, options=sub_options),
            self._closer.schedule,
        )
        self._pool.track(self._routing.state)
        self._closed = False
        self.target = self._routing.target

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self._pool.authorities()

    # --- routing ---------------------------------------------------------------

    def _route(
        self, snapshot: ServiceSnapshot, method: str, metadata: Metadata | None
    ) -> tuple[str, Endpoint, grpc.aio.Channel]:
        cluster, endpoint = self._routing.pick(snapshot, method, metadata)
        self._closer.bind_running()
        return cluster, endpoint, self._pool.get(endpoint)

    async def _snapshot(self) -> ServiceSnapshot:
        routing = self._routing
        try:
            return await routing.state.snapshot_async(routing.timeout)
        except RoutingError as exc:
            raise aio_unavailable(routing.describe(exc)) from exc

    def _record(
        self, started: float, method: str, cluster: str, endpoint: Endpoint
    ) -> Callable[[Any], None]:
        def done(call: Any) -> None:
            self._routing.record(started, method, _finished_code(call), cluster, endpoint)

        return done

    # --- grpc.aio.Channel --------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioUnaryUnary(
            self, "unary_unary", method, request_serializer, response_deserializer
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioUnaryStream(
            self, "unary_stream", method, request_serializer, response_deserializer
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioStreamUnary(
            self, "stream_unary", method, request_serializer, response_deserializer
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioStreamStream(
            self, "stream_stream", method, request_serializer, response_deserializer
        )

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """READY once a snapshot routes, TRANSIENT_FAILURE while unavailable, else CONNECTING."""
        view = self._routing.state.view
        if view is None:
            return grpc.ChannelConnectivity.CONNECTING
        if isinstance(view, ServiceSnapshot):
            return grpc.ChannelConnectivity.READY
        return grpc.ChannelConnectivity.TRANSIENT_FAILURE

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        loop = asyncio.get_running_loop()
        while self.get_state() == last_observed_state:
            changed: asyncio.Future[None] = loop.create_future()

            def wake(_view: ServiceView, changed: asyncio.Future[None] = changed) -> None:
                loop.call_soon_threadsafe(_set_done, changed)

            self._routing.state.add_listener(wake)
            try:
                if self.get_state() == last_observed_state:
                    await changed
            finally:
                self._routing.state.remove_listener(wake)

    async def channel_ready(self) -> None:
        while (state := self.get_state()) is not grpc.ChannelConnectivity.READY:
            await self.wait_for_state_change(state)

    async def close(self, grace: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await self._closer.aclose_all(self._pool.drain())

    async def __aenter__(self) -> AioMeshChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _close_channel(channel: grpc.aio.Channel) -> None:
    await channel.close(None)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _finished_code(call: Any) -> grpc.StatusCode | None:
    """The status of a finished aio call, read without scheduling a task.

    ``code()`` is a coroutine that completes at once when the call is done;
    step it once and take its result (None if it would have to wait).
    """
    coroutine = call.code()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        code: grpc.StatusCode = stop.value
        return code
    except Exception:
        return None
    coroutine.close()
    return None


class _AioMultiCallable:
    """Per method: pick per call, delegate to the endpoint sub-channel's multicallable."""

    def __init__(
        self,
        channel: AioMeshChannel,
        kind: str,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._kind = kind
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer
        self._cache: dict[str, tuple[grpc.aio.Channel, Any]] = {}

    def _start(self, snapshot: ServiceSnapshot, request: Any, kwargs: dict[str, Any]) -> Any:
        cluster, endpoint, sub = self._channel._route(snapshot, self._method, kwargs["metadata"])
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
        call = cached[1](request, **kwargs)
        call.add_done_callback(
            self._channel._record(_perf_counter(), self._method, cluster, endpoint)
        )
        return call

    async def _start_later(self, request: Any, kwargs: dict[str, Any]) -> Any:
        snapshot = await self._channel._snapshot()
        try:
            return self._start(snapshot, request, kwargs)
        except RoutingError as exc:
            raise aio_unavailable(self._channel._routing.describe(exc)) from exc

    def _invoke(
        self,
        request: Any,
        timeout: float | None,
        metadata: Metadata | None,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> Any:
        kwargs = {
            "timeout": timeout,
            "metadata": metadata,
            "credentials": credentials,
            "wait_for_ready": wait_for_ready,
            "compression": compression,
        }
        view = self._channel._routing.state.view
        if type(view) is ServiceSnapshot:
            try:
                return self._start(view, request, kwargs)
            except RoutingError:
                pass  # let the deferred call raise it as an AioRpcError where grpc would
        return DeferredCall(self._start_later(request, kwargs))

    def __call__(
        self,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)


class _AioUnaryUnary(_AioMultiCallable, grpc.aio.UnaryUnaryMultiCallable):  # type: ignore[misc,type-arg]
    """Unary request, unary response."""


class _AioUnaryStream(_AioMultiCallable, grpc.aio.UnaryStreamMultiCallable):  # type: ignore[misc,type-arg]
    """Unary request, streamed responses."""


class _AioStreamUnary(_AioMultiCallable, grpc.aio.StreamUnaryMultiCallable):  # type: ignore[misc,type-arg]
    """Streamed requests (iterator or ``write()``), unary response."""


class _AioStreamStream(_AioMultiCallable, grpc.aio.StreamStreamMultiCallable):  # type: ignore[misc,type-arg]
    """Streamed both ways."""
