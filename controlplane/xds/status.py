"""The status view of connected clients, as plain JSON-ready dicts.

Per stream: who it is, and per type what it subscribed to, what we sent, what
it ACKed and the last NACK (version, nonce, error, time). Times are ISO 8601
UTC strings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from controlplane.xds.stream import AdsStream
from controlplane.xds.subscription import Subscription


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="milliseconds")


def stream_status(stream: AdsStream) -> dict[str, object]:
    return {
        "node_id": stream.node.id if stream.node is not None else None,
        "node_cluster": stream.node.cluster if stream.node is not None else None,
        "peer": stream.peer,
        "connected_at": iso_time(stream.connected_at),
        "types": {
            url: subscription_status(sub) for url, sub in sorted(stream.subscriptions.items())
        },
        "unknown_types": {url: list(names) for url, names in sorted(stream.unknown_types.items())},
    }


def subscription_status(sub: Subscription) -> dict[str, object]:
    sent = sub.last_sent
    nack = sub.last_nack
    return {
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
        "last_nack": None
        if nack is None
        else {
            "version": nack.version,
            "nonce": nack.nonce,
            "error": nack.error,
            "at": iso_time(nack.at),
        },
        "nack_count": sub.nacks,
    }
