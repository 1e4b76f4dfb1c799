"""The status view of connected clients, as plain JSON-ready dicts.

Per stream: who it is (node, user agent and the kind read from it, ``xds``:
``sotw`` or ``delta``), and per type what it subscribed to, what we sent, what
it ACKed and the last NACK (version, nonce, error, time), with a sync status
as ``istioctl proxy-status`` shows it:

* ``NOT SENT``: nothing of this type was sent (not subscribed, or nothing to send);
* ``SYNCED``: the client ACKed the last response sent (its nonce), or, on a Delta
  stream, nothing was sent because the client came holding every current version
  (``initial_resource_versions``, as Envoy reconnects after a control plane restart);
* ``NACKED``: the client refused the last response sent (the error is kept),
  or, on a Delta stream, still refuses a resource it was sent;
* ``STALE``: the last response sent is not answered yet.

On a Delta stream a response carries only what changed; the detail view's
``resources`` are then every resource the client holds. Times are ISO 8601 UTC
strings.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from controlplane.xds.stream_core import XdsStream
from controlplane.xds.subscription import Subscription
from controlplane.xds.typeurls import SEND_ORDER, short_name

NOT_SENT = "NOT SENT"
SYNCED = "SYNCED"
NACKED = "NACKED"
STALE = "STALE"


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="milliseconds")


def sync_status(sub: Subscription | None) -> str:
    """SYNCED / STALE / NACKED / NOT SENT for one type of one stream."""
    sent = None if sub is None else sub.last_sent
    if sub is None or sent is None:
        # A Delta client back (after a restart) with every version current needs nothing sent.
        return SYNCED if sub is not None and sub.holding() else NOT_SENT
    if sub.refused():
        return NACKED
    if sub.acked_nonce == sent.nonce:
        return SYNCED
    return STALE


def _identity(stream: XdsStream[Any, Any]) -> dict[str, object]:
    name, version = stream.user_agent
    return {
        "node_id": stream.node.id if stream.node is not None else None,
        "node_cluster": stream.node.cluster if stream.node is not None else None,
        "kind": stream.kind,
        "xds": stream.protocol,
        "user_agent": {"name": name, "version": version},
        "peer": stream.peer,
        "connected_at": iso_time(stream.connected_at),
    }


def type_statuses(stream: XdsStream[Any, Any]) -> dict[str, str]:
    """``{"CDS": S, "EDS": S, "LDS": S, "RDS": S}`` for one stream."""
    return {short_name(url): sync_status(stream.subscriptions.get(url)) for url in SEND_ORDER}


def stream_status(stream: XdsStream[Any, Any]) -> dict[str, object]:
    return {
        **_identity(stream),
        "status": type_statuses(stream),
        "types": {
            url: subscription_status(sub) for url, sub in sorted(stream.subscriptions.items())
        },
        "unknown_types": {url: list(names) for url, names in sorted(stream.unknown_types.items())},
    }


def _nack_json(sub: Subscription) -> dict[str, object] | None:
    nack = sub.last_nack
    if nack is None:
        return None
    return {
        "version": nack.version,
        "nonce": nack.nonce,
        "error": nack.error,
        "at": iso_time(nack.at),
    }


def subscription_status(sub: Subscription) -> dict[str, object]:
    sent = sub.last_sent
    return {
        "type": short_name(sub.type_url),
        "status": sync_status(sub),
        "wildcard": sub.wildcard,
        "subscribed": sorted(sub.names),
        "sent": None
        if sent is None
        else {
            "version": sent.version,
            "nonce": sent.nonce,
            "resources": len(sent.names),
            "at": iso_time(sent.at),
        },
        "acked_version": sub.acked_version,
        "acked_nonce": sub.acked_nonce,
        "last_nack": _nack_json(sub),
        "nack_count": sub.nacks,
    }


def stream_detail(stream: XdsStream[Any, Any]) -> dict[str, object]:
    """What one stream was last sent, per type by short name: version, nonce and
    the names of the resources, with the ACK/NACK state."""
    types: dict[str, object] = {}
    for url in SEND_ORDER:
        sub = stream.subscriptions.get(url)
        sent = None if sub is None else sub.last_sent
        types[short_name(url)] = {
            "type_url": url,
            "status": sync_status(sub),
            "version": None if sent is None else sent.version,
            "nonce": None if sent is None else sent.nonce,
            "sent_at": None if sent is None else iso_time(sent.at),
            "resources": [] if sub is None else list(sub.holding()),
            "acked_version": None if sub is None else sub.acked_version,
            "last_nack": None if sub is None else _nack_json(sub),
        }
    return {**_identity(stream), "types": types}
