"""What every ADS stream does, whichever wire protocol it speaks.

State of the world (:mod:`.stream`) and incremental (:mod:`.delta_stream`)
streams differ only in how a request changes a subscription and how a response
is put on the wire. The rest is here, once: requests are handled as they are
read and snapshot changes when the stream's loop takes them, each to the end
before the next (no await inside: per-type state needs no locks), and their
answers go out in order through one mailbox; the first request names the node,
which gets a snapshot and a watch
on it; ACKs and NACKs are recorded per type and reported to the observer (the
status view and metrics read both protocols alike).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog
from envoy.config.core.v3 import base_pb2

from controlplane.model import NodeInfo
from controlplane.translate import TranslationError, check_node
from controlplane.xds.cache import Cancel, SnapshotCache
from controlplane.xds.dependents import OwedResources
from controlplane.xds.mailbox import Mailbox
from controlplane.xds.nodes import node_info
from controlplane.xds.observer import NullObserver, XdsObserver, client_kind
from controlplane.xds.subscription import Rejection, Sent, Subscription
from controlplane.xds.typeurls import short_name

log = structlog.get_logger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response already serialized (the server's serializer passes ``data`` through)."""

    type_url: str
    data: bytes


class StreamProtocolError(Exception):
    """The client broke the ADS protocol; the stream ends with INVALID_ARGUMENT."""


class NodeDirectory(Protocol):
    """Who keeps a snapshot for every connected node (the updater)."""

    def connect(self, node: NodeInfo) -> None: ...

    def disconnect(self, node_id: str) -> None: ...


class _Signal(enum.Enum):
    SNAPSHOT = "snapshot"
    END = "end"


@dataclass(frozen=True, slots=True)
class _Failed:
    """Handling a request raised ``error``: :meth:`XdsStream.run` raises it."""

    error: Exception


class XdsStream(ABC, Generic[Request, Response]):
    """One ADS call; subclasses implement :meth:`_on_request` and :meth:`_on_snapshot`."""

    protocol = ""  # "sotw" / "delta", shown in the status view

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
        self._events: Mailbox[list[Response] | _Signal | _Failed] = Mailbox()
        self._snapshot_pending = False
        self._cancel_watch: Cancel | None = None
        self._owed = OwedResources()  # dependents to resend (see .dependents)
        # Bound once: the module's lazy proxy binds again on every call, and the
        # protocol chatter (debug) is logged for every response and ACK.
        self._log = log.bind()

    def close(self) -> None:
        """Ask :meth:`run` to finish (server shutdown)."""
        self._events.put_nowait(_Signal.END)

    async def run(self, requests: AsyncIterator[Request]) -> AsyncGenerator[Response, None]:
        """Serve the stream until the client hangs up or :meth:`close` is called."""
        reader = asyncio.ensure_future(self._read(requests))
        try:
            while True:
                event = await self._events.get()
                if event is _Signal.END:
                    return
                if event is _Signal.SNAPSHOT:
                    self._snapshot_pending = False
                    responses = self._on_snapshot() if self.node is not None else []
                elif isinstance(event, _Failed):
                    raise event.error
                else:
                    responses = event
                for response in responses:
                    yield response
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self._forget_node()

    async def _read(self, requests: AsyncIterator[Request]) -> None:
        """Answer each request as it arrives; only answers go through the mailbox (most
        requests are ACKs, which need none)."""
        try:
            async for request in requests:
                try:
                    responses = self._on_request(request)
                except Exception as exc:  # the protocol's refusal, or a bug: end the stream
                    self._events.put_nowait(_Failed(exc))
                    return
                if responses:
                    self._events.put_nowait(responses)
        finally:
            self._events.put_nowait(_Signal.END)

    @abstractmethod
    def _on_request(self, request: Request) -> list[Response]:
        """The wire adapter's answer to one client request (SotW or Delta rules)."""

    @abstractmethod
    def _on_snapshot(self) -> list[Response]:
        """The wire adapter's pushes after the node's snapshot changed."""

    # --- shared steps ------------------------------------------------------

    def _node_for(self, node: base_pb2.Node) -> NodeInfo:
        """The stream's node: from the first request, which must carry node.id."""
        if self.node is not None:
            return self.node
        if not node.id:
            raise StreamProtocolError("the first request on a stream must carry node.id")
        info = node_info(node)
        try:
            check_node(info)
        except TranslationError as exc:
            # A bad node is refused on its own stream; it must never block
            # the rebuild that every other node shares.
            raise StreamProtocolError(f"node {info.id!r}: {exc}") from exc
        self.node = info
        self.user_agent = (node.user_agent_name, node.user_agent_version)
        self.kind = client_kind(node.user_agent_name)
        log.info(
            "xds_stream_opened", node=info.id, peer=self.peer, kind=self.kind, xds=self.protocol
        )
        self._observer.stream_opened(self, self.kind)
        self._cancel_watch = self._cache.watch(info.id, self._on_new_snapshot)
        self._directory.connect(info)
        return info

    def _next_nonce(self) -> str:
        return str(next(self._nonces))

    def _record_reply(
        self,
        sub: Subscription,
        answered: Sent,
        *,
        nonce: str,
        error: str | None,
        acked_version: str,
    ) -> None:
        """A request answered ``answered``: an ACK, or a NACK when ``error`` is set."""
        node_id = self.node.id if self.node is not None else ""
        kind = short_name(sub.type_url)
        if error is not None:
            rejection = Rejection(
                version=answered.version, nonce=nonce, error=error, at=self._clock()
            )
            sub.record_nack(rejection)
            self._observer.nacked(self, sub.type_url, rejection)
            log.warning(
                "xds_nack",
                node=node_id,
                type=kind,
                version=rejection.version,
                nonce=nonce,
                kept_version=acked_version,
                error=error,
            )
        else:
            sub.record_ack(acked_version, nonce)
            self._observer.acked(self, sub.type_url, answered)
            self._log.debug("xds_ack", node=node_id, type=kind, version=acked_version)

    def _record_sent(
        self,
        sub: Subscription,
        sent: Sent,
        *,
        push: bool,
        content: str | None = None,
        **details: object,
    ) -> None:
        sub.record_sent(sent, content)
        self._observer.sent(self, sub.type_url, sent, push=push)
        self._log.debug(
            "xds_send",
            node=self.node.id if self.node is not None else "",
            type=short_name(sub.type_url),
            version=sent.version,
            nonce=sent.nonce,
            resources=len(sent.names),
            **details,
        )

    def _on_new_snapshot(self, snapshot: object) -> None:
        del snapshot  # read from the cache when handled: always the newest
        if not self._snapshot_pending:
            self._snapshot_pending = True
            self._events.put_nowait(_Signal.SNAPSHOT)

    def _forget_node(self) -> None:
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if self.node is not None:
            log.info("xds_stream_closed", node=self.node.id, peer=self.peer)
            self._observer.stream_closed(self)
            self._directory.disconnect(self.node.id)
