"""The AggregatedDiscoveryService servicer: one stream object per call, state of
the world (:class:`AdsStream`) or incremental (:class:`DeltaAdsStream`), served
by the same loop.

It is registered with a serializer that passes encoded responses through
(:func:`add_to_server`): state-of-the-world responses are encoded once per
snapshot and names, not once per stream.

It also keeps the set of open streams, for the status view and for closing
them all on shutdown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import grpc
import structlog
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.delta_stream import DeltaAdsStream
from controlplane.xds.observer import NullObserver, XdsObserver
from controlplane.xds.stream import AdsStream
from controlplane.xds.stream_core import Encoded, NodeDirectory, StreamProtocolError, XdsStream

log = structlog.get_logger(__name__)


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        cache: SnapshotCache,
        directory: NodeDirectory,
        clock: Callable[[], float] = time.time,
        observer: XdsObserver | None = None,
    ) -> None:
        self._cache = cache
        self._observer: XdsObserver = observer or NullObserver()
        self._directory = directory
        self._clock = clock
        self._streams: set[XdsStream[Any, Any]] = set()
        self._closed = False

    def streams(self) -> list[XdsStream[Any, Any]]:
        """Open streams, oldest first."""
        return sorted(self._streams, key=lambda s: s.connected_at)

    def close_all(self) -> None:
        """End every open stream and refuse new ones (shutdown)."""
        self._closed = True
        for stream in list(self._streams):
            stream.close()

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
        ],
    ) -> None:
        await self._serve(AdsStream, request_iterator, context)

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
        ],
    ) -> None:
        await self._serve(DeltaAdsStream, request_iterator, context)

    async def _serve(
        self,
        stream_class: type[XdsStream[Any, Any]],
        request_iterator: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        if self._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is shutting down")
        stream = stream_class(
            peer=context.peer(),
            cache=self._cache,
            directory=self._directory,
            clock=self._clock,
            observer=self._observer,
        )
        self._streams.add(stream)
        try:
            async with aclosing(stream.run(request_iterator)) as responses:
                async for response in responses:
                    # Written here, not yielded, so a failed write is seen and counted.
                    try:
                        await context.write(response)
                    except Exception as exc:
                        self._observer.send_failed(stream, response.type_url)
                        log.warning("xds_send_failed", peer=stream.peer, error=repr(exc))
                        return
        except StreamProtocolError as exc:
            log.warning("xds_stream_rejected", peer=stream.peer, error=str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            self._streams.discard(stream)


ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"

# gRPC core refuses new calls beyond 1,000 waiting for the server ("Too many pending
# requests", 3,000 hard): a fleet of thousands reconnecting at once (a control plane
# restart) is such a burst. Streams wait instead; each is handled in turn.
SERVER_OPTIONS = (
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
)


def _serialize(response: Encoded | discovery_pb2.DeltaDiscoveryResponse) -> bytes:
    if isinstance(response, Encoded):
        return response.data
    return bytes(response.SerializeToString())


def add_to_server(servicer: AdsServicer, server: grpc.aio.Server) -> None:
    """Serve ``servicer``'s two ADS methods on ``server`` (before it starts)."""
    handler = grpc.method_handlers_generic_handler(
        ADS_SERVICE,
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                servicer.StreamAggregatedResources,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_serialize,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                servicer.DeltaAggregatedResources,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_serialize,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
