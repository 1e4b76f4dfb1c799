"""One type's subscription on an incremental (Delta) xDS stream.

The same :class:`~.subscription.Subscription` (names, wildcard, what was sent,
ACKs and NACKs) plus what incremental xDS adds, following the xDS protocol's
"Incremental xDS" rules:

* requests change the names by ``resource_names_subscribe`` /
  ``resource_names_unsubscribe``; ``*`` is the wildcard (LDS, CDS), and a
  first request naming nothing subscribes to it (legacy wildcard), kept until
  ``*`` is unsubscribed;
* the server tracks, per resource, the version the client holds (from
  ``initial_resource_versions`` on a new stream, then from what it was sent)
  and sends only resources whose version differs; a name subscribed (again)
  is always sent, as the client may have forgotten it;
* ``removed_resources`` says a held resource is gone, a named one does not
  exist, or (wildcard plus an explicit name dropped) the name is not in the
  wildcard set;
* a NACKed resource is held, not resent, until it changes (as in SotW); the
  type shows NACKED while the client still refuses one (a later response it
  ACKs carries other resources, not a fix).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.xds.snapshot import TypeSnapshot
from controlplane.xds.subscription import WILDCARD, Sent, Subscription, in_wildcard

MAX_OUTSTANDING = 64  # responses remembered for their ACK/NACK, per type
MAX_NAMES = 100_000  # names one stream may subscribe to, per type


class TooManyNamesError(ValueError):
    """A stream subscribed to more than :data:`MAX_NAMES` names of one type."""


@dataclass(frozen=True, slots=True)
class DeltaChange:
    """What one response must carry: resources to send and names to remove."""

    send: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.send or self.removed)


@dataclass(slots=True)
class DeltaSubscription(Subscription):
    held: dict[str, str] = field(default_factory=dict)  # name -> version the client has
    told_missing: set[str] = field(default_factory=set)  # named, told it does not exist
    must_answer: set[str] = field(default_factory=set)  # unsubscribed under a wildcard
    outstanding: dict[str, tuple[Sent, dict[str, str]]] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)  # names whose held version was NACKed

    def apply(
        self,
        subscribe: Iterable[str],
        unsubscribe: Iterable[str],
        initial_versions: Mapping[str, str],
    ) -> None:
        """Apply one DeltaDiscoveryRequest's subscription change.

        ``initial_versions`` counts on the first request of the type only.
        Raises :class:`TooManyNamesError` (nothing applied) past :data:`MAX_NAMES`.
        """
        subscribe = tuple(subscribe)
        unsubscribe = tuple(unsubscribe)
        first = not self.requested
        added = set(subscribe) - {WILDCARD}
        if len(self.names) + len(added - self.names) > MAX_NAMES:
            raise TooManyNamesError(
                f"more than {MAX_NAMES} resource names subscribed on one stream"
            )
        self.requested = True
        if first:
            self.held = dict(initial_versions)
            if not subscribe and not unsubscribe:
                self.wildcard = self.wildcard_capable  # legacy wildcard
        else:
            initial_versions = {}
        if WILDCARD in subscribe:
            self.wildcard = self.wildcard_capable
        if added:
            self.explicit = True
        for name in added:
            if initial_versions.get(name) is None:
                self.held.pop(name, None)  # resubscribed: send it even if unchanged
            self.told_missing.discard(name)
            self.must_answer.discard(name)
        self.names = self.names | added
        for name in unsubscribe:
            if name == WILDCARD:
                self.wildcard = False
                continue
            if name in self.names and self.wildcard:
                self.must_answer.add(name)  # in the wildcard or not: the client must learn
            self.names = self.names - {name}
            self.held.pop(name, None)
            self.told_missing.discard(name)
            self.rejected.discard(name)

    def change(self, current: TypeSnapshot) -> DeltaChange:
        """What the client lacks from ``current`` given what it holds."""
        available = current.resources
        versions = current.resource_versions
        wanted = {n for n in available if in_wildcard(n)} if self.wildcard else set()
        wanted.update(name for name in self.names if name in available)
        # Held resources no longer subscribed: the client dropped them itself.
        for name in [n for n in self.held if not (self.wildcard or n in self.names)]:
            del self.held[name]
            self.rejected.discard(name)
        send = tuple(sorted(n for n in wanted if self.held.get(n) != versions[n]))
        removed = {n for n in self.held if n not in available}
        removed.update(n for n in self.names if n not in available and n not in self.told_missing)
        removed.update(n for n in self.must_answer if n not in available)
        return DeltaChange(send=send, removed=tuple(sorted(removed)))

    def record_change(self, change: DeltaChange, current: TypeSnapshot, sent: Sent) -> None:
        """``change`` went out as ``sent``: the client holds it now (or refuses it, held)."""
        for name in change.send:
            self.held[name] = current.resource_versions[name]
            self.told_missing.discard(name)
        for name in change.removed:
            self.held.pop(name, None)
            if name in self.names:
                self.told_missing.add(name)
        self.rejected.difference_update(change.send)
        self.rejected.difference_update(change.removed)
        self.must_answer.clear()
        self.outstanding[sent.nonce] = (sent, {n: self.held[n] for n in change.send})
        while len(self.outstanding) > MAX_OUTSTANDING:
            del self.outstanding[next(iter(self.outstanding))]

    def answered(self, nonce: str, *, refused: bool) -> Sent | None:
        """The response ``nonce`` names, forgotten once answered; None if unknown.

        ``refused`` (a NACK): its resources that the client is still taken to
        hold at the versions it refused count as rejected until they change.
        """
        entry = self.outstanding.pop(nonce, None)
        if entry is None:
            return None
        sent, versions = entry
        if refused:
            self.rejected.update(n for n, v in versions.items() if self.held.get(n) == v)
        return sent

    def refused(self) -> bool:
        return bool(self.rejected) or Subscription.refused(self)

    def holding(self) -> tuple[str, ...]:
        return tuple(sorted(self.held))
