"""The store's contract: what the control plane keeps across restarts, behind one interface.

Three things are kept:

* **resources** applied through the API, keyed by (kind, namespace, name), each with the
  store revision of its last change as its version (``metadata.resourceVersion``). The
  revision grows by one per commit, over the whole store, as etcd's does;
* **registrations** (run-time workloads) as JSON records with a wall-clock expiry, so a
  restarted control plane serves them for the rest of their TTL (leases, on etcd);
* **the CA** (:class:`StoredCa`: its key and certificate chain, so every replica signs under
  one root; made once, by compare-and-create: :meth:`Store.create_ca`) and the **revoked
  join tokens** (:class:`RevokedToken`), so a token revoked at one replica is refused by all.
  The CA key is kept unencrypted: whoever can read the store can sign as the mesh, so the
  store is protected as the key is (the SQLite file is 0600; etcd needs auth/TLS and a
  private network in production).

Writes of resources are one transaction per :meth:`Store.commit`, every write carrying the
version it expects (compare-and-swap): one stale version refuses the whole batch with
:class:`VersionConflict` and nothing is written. Every commit is announced to the
:meth:`Store.watch` callbacks as one :class:`Change`, with the ``origin`` of the store
instance that made it, so a replica following a shared store (etcd) can tell its own
writes from another replica's.

Implementations: :class:`controlplane.store.sqlite.SqliteStore` (a file, or memory; one
writer, one control plane holds it) and :class:`controlplane.store.etcd.EtcdStore`
(shared by replicas: its feed also delivers other replicas' commits, which the control
plane applies, :mod:`controlplane.store_follower`). The revision only grows; on SQLite by
one per commit, on etcd it is etcd's (registration writes move it too).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

# A JSON object as the store keeps it (str keys; str, int, float, bool, None, lists, objects).
JsonObject = Mapping[str, Any]

#: ``expected_version`` of a write that must create: no resource of that key may exist.
ABSENT = 0


class ResourceKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One applied resource: the document as applied (no ``resourceVersion`` inside) and
    the revision of its last change."""

    key: ResourceKey
    document: JsonObject
    version: int


@dataclass(frozen=True, slots=True)
class PutResource:
    """Create or replace ``key`` with ``document``. ``expected_version``: None writes
    whatever is there, :data:`ABSENT` only creates, a number only replaces that version."""

    key: ResourceKey
    document: JsonObject
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteResource:
    """Remove ``key`` (which must exist), if it is still at ``expected_version`` (None: any)."""

    key: ResourceKey
    expected_version: int | None = None


Write = PutResource | DeleteResource


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    """A registration record and when it lapses (seconds since the epoch)."""

    id: str
    record: JsonObject
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredCa:
    """The mesh CA as the store keeps it: PEM key (unencrypted), PEM chain (the CA
    certificate first, the self-signed root last) and the trust domain it serves."""

    key_pem: str
    chain_pem: str
    trust_domain: str


@dataclass(frozen=True, slots=True)
class RevokedToken:
    """A join token id refused until ``expires_at`` (seconds since the epoch), when the
    token would have expired anyway."""

    id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Contents:
    """Everything the store holds, as of ``revision`` (what a starting control plane loads)."""

    revision: int
    resources: tuple[StoredResource, ...]
    registrations: tuple[StoredRegistration, ...]
    ca: StoredCa | None = None
    revoked_tokens: tuple[RevokedToken, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One commit, as watchers see it. ``revision`` is 0 for registration-only changes
    (they do not move the resources' revision)."""

    origin: str
    revision: int = 0
    resources_put: tuple[StoredResource, ...] = ()
    resources_deleted: tuple[ResourceKey, ...] = ()
    registrations_put: tuple[StoredRegistration, ...] = ()
    registrations_deleted: tuple[str, ...] = ()
    tokens_revoked: tuple[RevokedToken, ...] = ()


ChangeCallback = Callable[[Change], None]
Cancel = Callable[[], None]


class StoreError(Exception):
    """The store failed (cannot open, locked by another process, corrupt, I/O)."""


class StoreLocationError(StoreError):
    """``--store`` / ``--data-dir`` name no store this control plane can use."""


class VersionConflict(StoreError):
    """A write's expected version is not the stored one: the whole commit was refused."""

    def __init__(self, key: ResourceKey, expected: int | None, actual: int | None) -> None:
        if actual is None:
            wanted = "" if not expected else f" (expected at resourceVersion {expected})"
            message = f"{key} does not exist{wanted}"
        elif expected == ABSENT:
            message = f"{key} already exists (resourceVersion {actual})"
        else:
            message = (
                f"{key} is at resourceVersion {actual}, not {expected}: it changed since it "
                "was read; get it again and retry"
            )
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.actual = actual


class Store(abc.ABC):
    """Resources and registrations, kept across restarts. Use from one event loop."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._callbacks: list[ChangeCallback] = []

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where the store is, for logs and ``GET /v1/config`` (``sqlite:///...``, ``memory``)."""

    @property
    @abc.abstractmethod
    def persistent(self) -> bool:
        """False when nothing outlives the process."""

    @property
    def problem(self) -> str | None:
        """Why the store cannot be reached right now (a shared store), else None."""
        return None

    @abc.abstractmethod
    async def open(self) -> Contents:
        """Open (create if new, refuse if held by another process) and load everything.
        Registrations already expired are left out (and dropped). Raises StoreError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store; idempotent."""

    @abc.abstractmethod
    async def commit(self, writes: Sequence[Write]) -> int:
        """Apply every write in one transaction, or none (VersionConflict, StoreError).
        Returns the new revision (the current one when ``writes`` is empty)."""

    @abc.abstractmethod
    async def save_registrations(
        self, put: Sequence[StoredRegistration], deleted: Sequence[str]
    ) -> None:
        """Create or replace ``put`` and remove ``deleted`` (unknown ids are fine)."""

    @abc.abstractmethod
    async def touch_registrations(self, expiries: Mapping[str, float]) -> None:
        """Move the expiry of live registrations (heartbeats); unknown ids are skipped."""

    @abc.abstractmethod
    async def create_ca(self, ca: StoredCa) -> StoredCa:
        """Keep ``ca`` unless the store already holds a CA (compare-and-create: of two
        replicas racing, one wins). Returns the CA held now: ``ca`` or the earlier one."""

    @abc.abstractmethod
    async def revoke_tokens(self, revoked: Sequence[RevokedToken]) -> None:
        """Keep these revocations (announced to watchers; expired ones are dropped at open)."""

    def watch(self, callback: ChangeCallback) -> Cancel:
        """Call ``callback`` with every :class:`Change` committed from now on, on the
        event loop, in commit order. Returns the cancel function."""
        self._callbacks.append(callback)

        def cancel() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return cancel

    def _announce(self, change: Change) -> None:
        for callback in list(self._callbacks):
            callback(change)
