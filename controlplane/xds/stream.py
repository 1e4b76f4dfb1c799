"""One ADS stream (state of the world): requests in, responses out.

The stream mechanics (queue, node, watch, ACK/NACK) are in :mod:`.stream_core`
and the subscription rules in :mod:`.subscription`; this module is the SotW
wire adapter: a request carries the full set of names, a response every
resource subscribed to, sent as bytes encoded once per snapshot and names
(:meth:`TypeSnapshot.sotw_response`), so no stream builds protobuf objects.
"""

from __future__ import annotations

from typing import Any

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds.stream_core import Encoded, NodeDirectory, StreamProtocolError, XdsStream
from controlplane.xds.subscription import Sent, Subscription
from controlplane.xds.typeurls import KNOWN_TYPES, SEND_ORDER, WILDCARD_TYPES, short_name

__all__ = ["AdsStream", "NodeDirectory", "StreamProtocolError"]

log = structlog.get_logger(__name__)


class AdsStream(XdsStream[discovery_pb2.DiscoveryRequest, Encoded]):
    protocol = "sotw"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # type URL -> the type's version when this stream last worked out what to send:
        # a push skips a type whose version did not change since (most of them).
        self._answered: dict[str, str] = {}

    # --- requests ----------------------------------------------------------

    def _on_request(self, request: discovery_pb2.DiscoveryRequest) -> list[Encoded]:
        node = self._node_for(request.node)
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
            error = request.error_detail.message if request.HasField("error_detail") else None
            self._record_reply(
                sub, sub.last_sent, nonce=nonce, error=error, acked_version=request.version_info
            )
        sub.update_names(request.resource_names)
        # A request (not a NACK) for resources the client re-created is answered
        # even when their version did not change (see .dependents).
        response = self._respond(sub, owed_ok=not request.HasField("error_detail"))
        return [response] if response is not None else []

    # --- responses ---------------------------------------------------------

    def _on_snapshot(self) -> list[Encoded]:
        assert self.node is not None
        snapshot = self._cache.get(self.node.id)
        if snapshot is None:
            return []
        responses = []
        for type_url in SEND_ORDER:
            sub = self.subscriptions.get(type_url)
            if sub is None or self._answered.get(type_url) == snapshot.version(type_url):
                continue  # nothing of this type changed since it was last answered
            response = self._respond(sub, push=True)
            if response is not None:
                responses.append(response)
        return responses

    def _respond(
        self, sub: Subscription, *, owed_ok: bool = False, push: bool = False
    ) -> Encoded | None:
        assert self.node is not None
        snapshot = self._cache.get(self.node.id)
        if snapshot is None:
            return None
        current = snapshot.get(sub.type_url)
        # What a push needs to compare: a push for the same version is answered alike.
        self._answered[sub.type_url] = current.version
        names = sub.wanted(current.resources)
        if names is None:
            return None
        content = current.content_key(names)
        due = sub.needs_send(content, names)
        owed = self._owed.owed(sub.type_url, names) if owed_ok and not due else frozenset()
        if not due and not owed:
            return None
        nonce = self._next_nonce()
        response = Encoded(sub.type_url, current.sotw_response(sub.type_url, names, nonce))
        sent = Sent(version=current.version, nonce=nonce, names=names, at=self._clock())
        self._record_sent(sub, sent, push=push, content=content, resent=len(owed))
        self._owed.note_sent(sub.type_url, names, snapshot)
        return response
