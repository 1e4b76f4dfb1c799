"""What a client must be sent again after a resource it depends on changed.

Envoy re-creates a cluster whose CDS resource changed and warms the new one:
it asks for the cluster's ClusterLoadAssignment again, echoing the version and
nonce it already has, because its subscription's names did not change. The
answer it needs is the assignment itself (the new cluster has none yet); a
server that takes that request for a plain ACK leaves the cluster warming until
Envoy's initial-fetch timeout (15 s). The same holds for a re-created
listener's route configuration. So after sending a changed CDS (LDS) resource,
the EDS (RDS) names it refers to are *owed*: the next request naming one of
them is answered with the current resources even if their version is the same
(as go-control-plane users learned the hard way, kumahq/kuma#331).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from controlplane.xds.consistency import cluster_eds_names, listener_route_names
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

# parent type -> (the type it refers to, the names one parent resource refers to)
_REFERENCES: dict[str, tuple[str, Callable[[Any], Iterable[str]]]] = {
    CLUSTER_TYPE_URL: (ENDPOINTS_TYPE_URL, cluster_eds_names),
    LISTENER_TYPE_URL: (ROUTE_CONFIG_TYPE_URL, listener_route_names),
}


class OwedResources:
    """Per stream: the parent resources last sent, and the dependents now owed."""

    def __init__(self) -> None:
        self._sent: dict[str, dict[str, str]] = {}  # parent type -> name -> resource version
        self._owed: dict[str, set[str]] = {}  # dependent type -> names

    def owed(self, type_url: str, names: Iterable[str]) -> frozenset[str]:
        """Which of ``names`` (about to be sent) the client must get even if unchanged."""
        return frozenset(self._owed.get(type_url, set()).intersection(names))

    def note_sent(self, type_url: str, names: Iterable[str], snapshot: Snapshot) -> None:
        """Record a response of ``type_url`` carrying ``names`` from ``snapshot``."""
        sent = tuple(names)
        self._owed.get(type_url, set()).difference_update(sent)
        reference = _REFERENCES.get(type_url)
        if reference is None:
            return
        dependent_type, refers_to = reference
        versions = snapshot.get(type_url).resource_versions  # shared strings, no copies
        now = {name: versions[name] for name in sent}
        before = self._sent.get(type_url, {})
        # New or changed: the client builds the resource anew and subscribes again.
        changed = [name for name, value in now.items() if before.get(name) != value]
        self._sent[type_url] = now
        messages = snapshot.messages.get(type_url, {})
        owed: set[str] = set()
        for name in changed:
            # Read from the message once per snapshot, not once per stream sent it.
            owed.update(
                snapshot.derived(
                    (_REFERS_TO, type_url, name), partial(_references, messages, name, refers_to)
                )
            )
        if owed:
            self._owed.setdefault(dependent_type, set()).update(owed)


_REFERS_TO = "refers_to"  # Snapshot.derived key: the names one resource refers to


def _references(
    messages: Mapping[str, Any], name: str, refers_to: Callable[[Any], Iterable[str]]
) -> tuple[str, ...]:
    message = messages.get(name)
    return () if message is None else tuple(refers_to(message))
