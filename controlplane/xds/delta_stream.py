"""One Delta (incremental) ADS stream: the wire adapter for DeltaAggregatedResources.

Stream mechanics are shared with state of the world (:mod:`.stream_core`);
the subscription rules are in :mod:`.delta_subscription`. A response carries
only the resources whose version the client does not hold, each with its own
version, and ``removed_resources`` for names that are gone. Every request may
change the subscription, whatever nonce it echoes (a stale nonce is no reason
to drop it, the spec says); the nonce only says which response an ACK or NACK
answers.

Warming as in SotW (see :mod:`.dependents`): after a changed cluster
(listener) is sent, its ClusterLoadAssignment (route configuration) is sent
again too, so the re-created resource warms at once.
"""

from __future__ import annotations

from typing import TypeAlias

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds.delta_subscription import DeltaSubscription, TooManyNamesError
from controlplane.xds.stream_core import StreamProtocolError, XdsStream
from controlplane.xds.subscription import Sent
from controlplane.xds.typeurls import KNOWN_TYPES, SEND_ORDER, WILDCARD_TYPES, short_name

log = structlog.get_logger(__name__)

UNKNOWN_NAMES_KEPT = 100  # names of an unknown type kept for the status view

_Request: TypeAlias = discovery_pb2.DeltaDiscoveryRequest
_Response: TypeAlias = discovery_pb2.DeltaDiscoveryResponse


class DeltaAdsStream(XdsStream[_Request, _Response]):
    protocol = "delta"

    # --- requests ----------------------------------------------------------

    def _on_request(self, request: _Request) -> list[_Response]:
        node = self._node_for(request.node)
        type_url = request.type_url
        if not type_url:
            raise StreamProtocolError("a DeltaDiscoveryRequest must set type_url")
        if request.resource_locators_subscribe or request.resource_locators_unsubscribe:
            raise StreamProtocolError(
                "resource_locators_subscribe/unsubscribe (dynamic parameters) are not "
                "supported; name resources in resource_names_subscribe/unsubscribe"
            )
        if type_url not in KNOWN_TYPES:
            names = tuple(request.resource_names_subscribe[:UNKNOWN_NAMES_KEPT])
            self.unknown_types[type_url] = names
            log.warning("xds_unknown_type", node=node.id, type_url=type_url)
            return []
        sub = self._subscription(type_url)
        self._reply(sub, request)
        try:
            sub.apply(
                request.resource_names_subscribe,
                request.resource_names_unsubscribe,
                request.initial_resource_versions,
            )
        except TooManyNamesError as exc:
            raise StreamProtocolError(f"{short_name(type_url)}: {exc}") from exc
        # Answer in make-before-break order: a request may make any type due.
        return self._respond_all(push=False)

    def _subscription(self, type_url: str) -> DeltaSubscription:
        sub = self.subscriptions.get(type_url)
        if not isinstance(sub, DeltaSubscription):
            sub = DeltaSubscription(type_url=type_url, wildcard_capable=type_url in WILDCARD_TYPES)
            self.subscriptions[type_url] = sub
        return sub

    def _reply(self, sub: DeltaSubscription, request: _Request) -> None:
        """Record the ACK / NACK a request carries, if it answers a response we sent."""
        nonce = request.response_nonce
        error = request.error_detail.message if request.HasField("error_detail") else None
        if not nonce:
            if error is not None:
                log.warning("xds_nack_without_nonce", type=short_name(sub.type_url), error=error)
            return
        answered = sub.answered(nonce, refused=error is not None)
        if answered is None:
            log.debug("xds_unknown_nonce", type=short_name(sub.type_url), nonce=nonce)
            return
        kept = answered.version if error is None else (sub.acked_version or "")
        self._record_reply(sub, answered, nonce=nonce, error=error, acked_version=kept)

    # --- responses ---------------------------------------------------------

    def _on_snapshot(self) -> list[_Response]:
        return self._respond_all(push=True)

    def _respond_all(self, *, push: bool) -> list[_Response]:
        responses: list[_Response] = []
        for type_url in SEND_ORDER:
            sub = self.subscriptions.get(type_url)
            if isinstance(sub, DeltaSubscription):
                response = self._respond(sub, push=push)
                if response is not None:
                    responses.append(response)
        return responses

    def _respond(self, sub: DeltaSubscription, *, push: bool) -> _Response | None:
        assert self.node is not None
        snapshot = self._cache.get(self.node.id)
        if snapshot is None:
            return None
        current = snapshot.get(sub.type_url)
        owed = self._owed.owed(sub.type_url, sub.held)
        for name in owed:
            del sub.held[name]  # its parent was re-created: send it again
        change = sub.change(current)
        if not change:
            return None
        nonce = self._next_nonce()
        response = _Response(
            system_version_info=current.version,
            type_url=sub.type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(
                    name=name,
                    version=current.resource_versions[name],
                    resource=current.resources[name],
                )
                for name in change.send
            ],
            removed_resources=change.removed,
        )
        sent = Sent(version=current.version, nonce=nonce, names=change.send, at=self._clock())
        sub.record_change(change, current, sent)
        self._record_sent(sub, sent, push=push, removed=len(change.removed), resent=len(owed))
        self._owed.note_sent(sub.type_url, change.send, snapshot)
        return response
