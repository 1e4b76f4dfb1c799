"""What one stream asked for, per type, and what it did with our answers.

Follows the SotW subscription rules of the xDS protocol:

* the first request of a wildcard-capable type (LDS, CDS) with no names, or
  any request naming ``*``, subscribes to everything; a later empty request
  keeps a legacy wildcard until the client names resources explicitly;
* RDS/EDS subscriptions are always by name;
* a response is acknowledged by a request echoing its nonce; with
  ``error_detail`` that request is a NACK. Requests echoing an older nonce
  are stale and ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

WILDCARD = "*"
# Server-side (inbound) listeners go only to clients that name them, as istiod does
# for proxyless gRPC: a wildcard LDS subscriber (meshlib's client, an Envoy sidecar)
# would get listeners it cannot use.
NAMED_ONLY_PREFIXES = ("xds.istio.io/grpc/lds/inbound/",)


def in_wildcard(name: str) -> bool:
    """Whether a wildcard subscription covers the resource ``name``."""
    return not name.startswith(NAMED_ONLY_PREFIXES)


@dataclass(frozen=True, slots=True)
class Sent:
    version: str
    nonce: str
    names: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """A NACK: the version the client refused and why."""

    version: str
    nonce: str
    error: str
    at: float


@dataclass(slots=True)
class Subscription:
    type_url: str
    wildcard_capable: bool
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    explicit: bool = False  # the client has named resources at least once
    requested: bool = False  # a request for this type has been seen
    last_sent: Sent | None = None
    acked_version: str | None = None
    acked_nonce: str | None = None  # the nonce of the response last ACKed
    last_nack: Rejection | None = None
    nacks: int = 0
    _sent_key: tuple[object, ...] | None = field(default=None, repr=False)

    def update_names(self, requested: Iterable[str]) -> None:
        """Apply a request's resource_names to the subscription."""
        requested_set = frozenset(requested)
        first = not self.requested
        self.requested = True
        named = requested_set - {WILDCARD}
        if WILDCARD in requested_set:
            self.wildcard = self.wildcard_capable
        elif not requested_set:
            # Legacy wildcard: empty on the first request, kept until names appear.
            self.wildcard = self.wildcard_capable and (
                first or (self.wildcard and not self.explicit)
            )
        else:
            self.wildcard = False
        if named:
            self.explicit = True
        self.names = named

    def is_stale(self, nonce: str) -> bool:
        """A non-empty nonce that is not the one we last sent for this type."""
        return bool(nonce) and (self.last_sent is None or nonce != self.last_sent.nonce)

    def wanted(self, available: Collection[str]) -> tuple[str, ...] | None:
        """Names to send from ``available``, sorted; None when nothing is subscribed."""
        if self.wildcard:
            return tuple(sorted(n for n in available if in_wildcard(n) or n in self.names))
        if not self.names:
            return None
        # By the client's few names, not the type's every resource: this runs for
        # every subscriber on every push.
        return tuple(sorted(n for n in self.names if n in available))

    def needs_send(self, content: str, names: tuple[str, ...]) -> bool:
        """Only new content (``content``: the snapshot's key of what ``names`` hold, see
        :meth:`TypeSnapshot.content_key`), or a different set of names, goes out: a
        NACKed version is held rather than resent, and a change to resources this
        client did not ask for sends it nothing.

        For LDS and CDS a change of subscription also gets an answer even when
        the resources sent stay the same: in SotW their absence from a response
        is how the client learns a name does not exist, so it must not wait out
        its does-not-exist timer.
        """
        return self._sent_key != self._key(content, names)

    def record_sent(self, sent: Sent, content: str | None = None) -> None:
        """``content``: the snapshot's content key of the names sent (default: the version)."""
        self.last_sent = sent
        self._sent_key = self._key(sent.version if content is None else content, sent.names)

    def _key(self, version: str, names: tuple[str, ...]) -> tuple[object, ...]:
        if self.wildcard_capable:
            return (version, names, self.wildcard, self.names)
        return (version, names)

    def refused(self) -> bool:
        """The client refuses what it was sent: it NACKed the last response."""
        sent, nack = self.last_sent, self.last_nack
        return sent is not None and nack is not None and nack.nonce == sent.nonce

    def holding(self) -> tuple[str, ...]:
        """Names of the resources the client is taken to hold (the last response's)."""
        return () if self.last_sent is None else self.last_sent.names

    def record_ack(self, version: str, nonce: str = "") -> None:
        self.acked_version = version
        self.acked_nonce = nonce

    def record_nack(self, rejection: Rejection) -> None:
        self.last_nack = rejection
        self.nacks += 1
