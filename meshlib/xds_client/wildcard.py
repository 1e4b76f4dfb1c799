"""Wildcard subscriptions: when a SotW response is the whole world, and who is told.

A wildcard watcher asks for every resource of a type (LDS or CDS, the types
whose SotW responses must hold every subscribed resource). The client then
requests ``["*", *named]`` — the xDS "wildcard plus names" form — and each
response *computed by the server under the wildcard* lists every resource that
exists. Such a response is **complete**: a name absent from it does not exist.

The race. A response that was already in flight when the client first sent
``"*"`` was computed under the old, named-only subscription; it lists only the
named resources, and trusting it would report every other resource as absent.
Nonces cannot tell the two apart: a request echoing nonce N may be stale at the
server (a later response was already sent) and be ignored (as go-control-plane
and our control plane do) or applied late (as the xDS spec now recommends), so
"the first response after the request" may or may not reflect it, and the same
holds for every later one while responses keep crossing requests. So the
client trusts a response as complete only with proof that the server computed
it under a wildcard:

1. **Wildcard from the start of the stream**: every request of this type sent
   on the current stream carried ``"*"``. The server never had a named-only
   subscription on this stream, so no response on it can predate the wildcard.
   This is the usual case: meshlib starts its wildcard LDS watch before any
   named one, and every reconnect re-requests ``"*"`` in its first request.
2. **Content proof**: the response holds a resource whose name was never in a
   request on this stream. A server sends an unrequested resource only to a
   wildcard subscription, so the response lists everything (as of its version).

Otherwise (``"*"`` added mid-stream after named requests and the response holds
only named resources) the response is used for named watches exactly as before
— absence deletes only what was received, never-received names wait for the
does-not-exist timer — and wildcard watchers wait for a proven-complete
response (any new resource, or the next reconnect). Waiting is safe; a false
"does not exist" is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshlib.xds_client.watchers import ResourceWatcher

WILDCARD = "*"


@dataclass(eq=False)
class WildcardWatch:
    """One watch_all() call; ``cancelled`` stops callbacks that are already queued."""

    type_url: str
    watcher: ResourceWatcher[Mapping[str, Any]]
    cancelled: bool = False

    def callback(self, method: str, arg: object) -> Callable[[], None]:
        def deliver() -> None:
            if not self.cancelled:
                getattr(self.watcher, method)(arg)

        return deliver


@dataclass
class StreamProof:
    """What this stream's requests of one type prove about its responses."""

    all_wildcard: bool = True  # every request sent so far carried "*"
    named: set[str] = field(default_factory=set)  # every name requested so far

    def record_request(self, names: list[str]) -> None:
        if WILDCARD not in names:
            self.all_wildcard = False
        self.named.update(n for n in names if n != WILDCARD)

    def proves_complete(self, response_names: set[str]) -> bool:
        """True when the response must have been computed under a wildcard."""
        return self.all_wildcard or bool(response_names - self.named)


@dataclass
class WildcardState:
    """The wildcard watchers of one type and the last complete world they saw."""

    watches: list[WildcardWatch] = field(default_factory=list)
    resources: dict[str, Any] | None = None  # None until a complete response arrived
    version: str = ""

    def mapping(self) -> Mapping[str, Any] | None:
        return None if self.resources is None else MappingProxyType(dict(self.resources))

    def apply(self, valid: Mapping[str, Any], invalid: set[str], version: str) -> Mapping[str, Any]:
        """A complete response: valid resources plus the last good version of invalid ones."""
        previous = self.resources or {}
        world = dict(valid)
        for name in invalid:
            if name in previous:
                world[name] = previous[name]
        self.resources = world
        self.version = version
        return MappingProxyType(dict(sorted(world.items())))

    def dump(self) -> dict[str, Any]:
        return {
            "watchers": len(self.watches),
            "complete": self.resources is not None,
            "version": self.version,
            "names": sorted(self.resources or ()),
        }
