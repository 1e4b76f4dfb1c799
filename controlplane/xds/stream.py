"""One ADS stream (state of the world): requests in, responses out.

Requests and snapshot changes are funnelled through one queue and handled one
at a time, so per-type state needs no locks. Protocol rules live in
:mod:`.subscription`; this module applies them and builds responses.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.model import NodeInfo
from controlplane.translate import TranslationError, check_node
from controlplane.xds.cache import Cancel, SnapshotCache
from controlplane.xds.dependents import OwedResources
from controlplane.xds.nodes import node_info
from controlplane.xds.observer import NullObserver, XdsObserver, client_kind
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.subscription import Rejection, Sent, Subscription
from controlplane.xds.typeurls import KNOWN_TYPES, SEND_ORDER, WILDCARD_TYPES, short_name

log = structlog.get_logger(__name__)


class StreamProtocolError(Exception):
    """The client broke the ADS protocol; the stream ends with INVALID_ARGUMENT."""


class NodeDirectory(Protocol):
    """Who keeps a snapshot for every connected node (the updater)."""

    def connect(self, node: NodeInfo) -> None: ...

    def disconnect(self, node_id: str) -> None: ...


class _Signal(enum.Enum):
    SNAPSHOT = "snapshot"
    END = "end"


if TYPE_CHECKING:
    from typing import TypeAlias

    _Event: TypeAlias = "discovery_pb2.DiscoveryRequest | _Signal"


class AdsStream:
    def __init__(
        self,
        *,
        peer: str,
        cache: SnapshotCache,
        directory: NodeDirectory,
        clock: Callable[[], float],
        observer: XdsObserver | None = None,
    ) -> None:
        self.peer = peer
        self.connected_at = clock()
        self.node: NodeInfo | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.unknown_types: dict[str, tuple[str, ...]] = {}
        self.user_agent: tuple[str, str] = ("", "")  # node.user_agent_name, _version
        self.kind = "unknown"  # meshlib / grpc / envoy, from the user agent
        self._observer: XdsObserver = observer or NullObserver()
        self._cache = cache
        self._directory = directory
        self._clock = clock
        self._nonces = itertools.count(1)
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._snapshot_pending = False
        self._cancel_watch: Cancel | None = None
        self._owed = OwedResources()

    def close(self) -> None:
        """Ask :meth:`run` to finish (server shutdown)."""
        self._events.put_nowait(_Signal.END)

    async def run(
        self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest]
    ) -> AsyncGenerator[discovery_pb2.DiscoveryResponse, None]:
        """Serve the stream until the client hangs up or :meth:`close` is called."""
        reader = asyncio.ensure_future(self._read(requests))
        try:
            while True:
                event = await self._events.get()
                if event is _Signal.END:
                    return
                if event is _Signal.SNAPSHOT:
                    self._snapshot_pending = False
                    responses = self._on_snapshot()
                else:
                    responses = self._on_request(event)
                for response in responses:
                    yield response
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self._forget_node()

    async def _read(self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest]) -> None:
        try:
            async for request in requests:
                self._events.put_nowait(request)
        finally:
            self._events.put_nowait(_Signal.END)

    # --- requests ----------------------------------------------------------

    def _on_request(
        self, request: discovery_pb2.DiscoveryRequest
    ) -> list[discovery_pb2.DiscoveryResponse]:
        node = self._node_for(request)
        type_url = request.type_url
        if not type_url:
            raise StreamProtocolError("an ADS DiscoveryRequest must set type_url")
        if type_url not in KNOWN_TYPES:
            self.unknown_types[type_url] = tuple(request.resource_names)
            log.warning("xds_unknown_type", node=node.id, type_url=type_url)
            return []
        sub = self.subscriptions.get(type_url)
        if sub is None:
            sub = Subscription(type_url=type_url, wildcard_capable=type_url in WILDCARD_TYPES)
            self.subscriptions[type_url] = sub
        nonce = request.response_nonce
        if sub.is_stale(nonce):
            log.debug("xds_stale_nonce", node=node.id, type=short_name(type_url), nonce=nonce)
            return []
        if nonce and sub.last_sent is not None:
            self._record_reply(node, sub, sub.last_sent, request)
        sub.update_names(request.resource_names)
        # A request (not a NACK) for resources the client re-created is answered
        # even when their version did not change (see .dependents).
        response = self._respond(node, sub, owed_ok=not request.HasField("error_detail"))
        return [response] if response is not None else []

    def _node_for(self, request: discovery_pb2.DiscoveryRequest) -> NodeInfo:
        if self.node is not None:
            return self.node
        if not request.node.id:
            raise StreamProtocolError("the first DiscoveryRequest on a stream must carry node.id")
        node = node_info(request.node)
        try:
            check_node(node)
        except TranslationError as exc:
            # A bad node is refused on its own stream; it must never block
            # the rebuild that every other node shares.
            raise StreamProtocolError(f"node {node.id!r}: {exc}") from exc
        self.node = node
        self.user_agent = (request.node.user_agent_name, request.node.user_agent_version)
        self.kind = client_kind(request.node.user_agent_name)
        log.info("xds_stream_opened", node=self.node.id, peer=self.peer, kind=self.kind)
        self._observer.stream_opened(self, self.kind)
        self._cancel_watch = self._cache.watch(self.node.id, self._on_new_snapshot)
        self._directory.connect(self.node)
        return self.node

    def _record_reply(
        self,
        node: NodeInfo,
        sub: Subscription,
        answered: Sent,
        request: discovery_pb2.DiscoveryRequest,
    ) -> None:
        """The request answers ``answered``: an ACK, or a NACK with error_detail."""
        kind = short_name(sub.type_url)
        if request.HasField("error_detail"):
            rejection = Rejection(
                version=answered.version,
                nonce=request.response_nonce,
                error=request.error_detail.message,
                at=self._clock(),
            )
            sub.record_nack(rejection)
            self._observer.nacked(self, sub.type_url, rejection)
            log.warning(
                "xds_nack",
                node=node.id,
                type=kind,
                version=rejection.version,
                nonce=rejection.nonce,
                kept_version=request.version_info,
                error=rejection.error,
            )
        else:
            sub.record_ack(request.version_info, request.response_nonce)
            self._observer.acked(self, sub.type_url, answered)
            log.debug("xds_ack", node=node.id, type=kind, version=request.version_info)

    # --- responses ---------------------------------------------------------

    def _on_new_snapshot(self, snapshot: Snapshot) -> None:
        del snapshot  # read from the cache when handled: always the newest
        if not self._snapshot_pending:
            self._snapshot_pending = True
            self._events.put_nowait(_Signal.SNAPSHOT)

    def _on_snapshot(self) -> list[discovery_pb2.DiscoveryResponse]:
        if self.node is None:
            return []
        responses = []
        for type_url in SEND_ORDER:
            sub = self.subscriptions.get(type_url)
            response = self._respond(self.node, sub, push=True) if sub is not None else None
            if response is not None:
                responses.append(response)
        return responses

    def _respond(
        self, node: NodeInfo, sub: Subscription, *, owed_ok: bool = False, push: bool = False
    ) -> discovery_pb2.DiscoveryResponse | None:
        snapshot = self._cache.get(node.id)
        if snapshot is None:
            return None
        current = snapshot.get(sub.type_url)
        names = sub.wanted(current.resources)
        if names is None:
            return None
        due = sub.needs_send(current.version, names)
        owed = self._owed.owed(sub.type_url, names) if owed_ok and not due else frozenset()
        if not due and not owed:
            return None
        nonce = str(next(self._nonces))
        response = discovery_pb2.DiscoveryResponse(
            version_info=current.version,
            type_url=sub.type_url,
            nonce=nonce,
            resources=[current.resources[name] for name in names],
        )
        sent = Sent(version=current.version, nonce=nonce, names=names, at=self._clock())
        sub.record_sent(sent)
        self._observer.sent(self, sub.type_url, sent, push=push)
        self._owed.note_sent(sub.type_url, names, snapshot)
        log.debug(
            "xds_send",
            node=node.id,
            type=short_name(sub.type_url),
            version=current.version,
            nonce=nonce,
            resources=len(names),
            resent=len(owed),
        )
        return response

    def _forget_node(self) -> None:
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if self.node is not None:
            log.info("xds_stream_closed", node=self.node.id, peer=self.peer)
            self._observer.stream_closed(self)
            self._directory.disconnect(self.node.id)
