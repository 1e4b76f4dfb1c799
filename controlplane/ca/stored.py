"""The CA shared through the store: made once by the first replica, read by the others.

    ca = await shared_authority(store, contents.ca, settings, data_dir)   # CaError

Without ``--ca-cert/--ca-key``: the store's CA when it holds one; else a new root (or
the root an older control plane left in ``DATA_DIR/ca/``), kept by compare-and-create
(:meth:`Store.create_ca`): of two replicas starting at once, one root wins and both
use it. With them: that CA, put in the store when it holds none, and refused (naming
both fingerprints) when the store holds a CA under another root or trust domain, so
two replicas can never sign under two roots. Revocations an older control plane left
in ``DATA_DIR/ca/revoked-tokens.json`` are moved into the store the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import structlog

from controlplane.ca.authority import CaError, CertificateAuthority
from controlplane.store import RevokedToken, Store, StoredCa

log = structlog.get_logger(__name__)

LEGACY_FOLDER = "ca"
LEGACY_CERT, LEGACY_KEY = "root-cert.pem", "root-key.pem"
LEGACY_REVOCATIONS = "revoked-tokens.json"


class CaSettings(Protocol):
    """What the CA needs of :class:`controlplane.ca.SecuritySettings`."""

    @property
    def trust_domain(self) -> str: ...
    @property
    def ca_cert(self) -> Path | None: ...
    @property
    def ca_key(self) -> Path | None: ...
    @property
    def cert_ttl_s(self) -> float: ...
    @property
    def max_cert_ttl_s(self) -> float: ...


def to_stored(ca: CertificateAuthority) -> StoredCa:
    return StoredCa(ca.key_pem.decode(), ca.chain_pem.decode(), ca.trust_domain)


def _from_stored(stored: StoredCa, store: Store, settings: CaSettings) -> CertificateAuthority:
    if stored.trust_domain != settings.trust_domain:
        raise CaError(
            f"store {store.url}: its CA serves trust domain {stored.trust_domain!r}, not "
            f"--trust-domain {settings.trust_domain!r}; every replica needs the same one"
        )
    return CertificateAuthority.from_pems(
        stored.key_pem.encode(),
        stored.chain_pem.encode(),
        settings.trust_domain,
        where=f"the CA in store {store.url}",
        default_ttl_s=settings.cert_ttl_s,
        max_ttl_s=settings.max_cert_ttl_s,
    )


def _candidate(settings: CaSettings, data_dir: Path | None) -> CertificateAuthority:
    """The CA to offer the store: the explicit files, an older data dir's root, or new."""
    ttls = {"default_ttl_s": settings.cert_ttl_s, "max_ttl_s": settings.max_cert_ttl_s}
    if settings.ca_cert is not None and settings.ca_key is not None:
        return CertificateAuthority.from_files(
            settings.ca_cert, settings.ca_key, settings.trust_domain, **ttls
        )
    folder = data_dir / LEGACY_FOLDER if data_dir is not None else None
    if folder is not None and ((folder / LEGACY_CERT).exists() or (folder / LEGACY_KEY).exists()):
        cert, key = folder / LEGACY_CERT, folder / LEGACY_KEY
        ca = CertificateAuthority.from_files(cert, key, settings.trust_domain, **ttls)
        log.info("ca_imported", source=str(folder), fingerprint=ca.fingerprint)
        return ca
    return CertificateAuthority.new_root(settings.trust_domain, **ttls)


async def shared_authority(
    store: Store, held: StoredCa | None, settings: CaSettings, data_dir: Path | None
) -> CertificateAuthority:
    """The CA of the module docstring (CaError naming the flag, file or store)."""
    if (settings.ca_cert is None) != (settings.ca_key is None):
        raise CaError("--ca-cert and --ca-key go together: give both or neither")
    explicit = settings.ca_cert is not None
    if held is not None and not explicit:
        return _from_stored(held, store, settings)
    candidate = _candidate(settings, data_dir)
    if held is None:
        held = await store.create_ca(to_stored(candidate))  # StoreError
    ca = _from_stored(held, store, settings)
    if not explicit:
        if ca.fingerprint == candidate.fingerprint:
            log.info("ca_created", store=store.url, fingerprint=ca.fingerprint)
        return ca  # the race's winner, whichever replica made it
    if ca.fingerprint != candidate.fingerprint:
        raise CaError(
            f"--ca-cert {settings.ca_cert}: its root (sha256 {candidate.fingerprint}) is not "
            f"the root of the CA in store {store.url} (sha256 {ca.fingerprint}): workloads "
            "already trust that one; give the stored CA's chain, or a fresh store"
        )
    return candidate  # the explicit CA wins (same root: an intermediate renewed)


def legacy_revocations(data_dir: Path | None, now: float) -> list[RevokedToken]:
    """What an older control plane left in ``DATA_DIR/ca/revoked-tokens.json`` (CaError
    naming the file when it is not a revocation list)."""
    if data_dir is None:
        return []
    path = data_dir / LEGACY_FOLDER / LEGACY_REVOCATIONS
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        revoked = [RevokedToken(str(k), float(v)) for k, v in data.items()]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise CaError(f"{path}: not a revocation list ({exc})") from exc
    return [r for r in revoked if r.expires_at > now]
