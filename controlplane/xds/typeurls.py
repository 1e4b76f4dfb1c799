"""The xDS types the server knows, and the order it sends them in."""

from __future__ import annotations

from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

# Make before break: clusters and their endpoints exist before a listener or
# route table points at them.
SEND_ORDER: tuple[str, ...] = (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
KNOWN_TYPES: frozenset[str] = frozenset(SEND_ORDER)

# Types whose first request with no names means "everything" (xDS wildcard),
# and whose SotW responses are the full subscribed set (absence = deletion).
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER_TYPE_URL, CLUSTER_TYPE_URL})

SHORT_NAMES: dict[str, str] = {
    LISTENER_TYPE_URL: "LDS",
    ROUTE_CONFIG_TYPE_URL: "RDS",
    CLUSTER_TYPE_URL: "CDS",
    ENDPOINTS_TYPE_URL: "EDS",
}

__all__ = [
    "CLUSTER_TYPE_URL",
    "ENDPOINTS_TYPE_URL",
    "KNOWN_TYPES",
    "LISTENER_TYPE_URL",
    "ROUTE_CONFIG_TYPE_URL",
    "SEND_ORDER",
    "SHORT_NAMES",
    "WILDCARD_TYPES",
    "short_name",
]


def short_name(type_url: str) -> str:
    """``LDS``/``RDS``/``CDS``/``EDS`` for logs; the URL itself otherwise."""
    return SHORT_NAMES.get(type_url, type_url)
