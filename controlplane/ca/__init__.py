"""The control plane's CA, join tokens and secure xDS address, set up together.

security = await Security.open(SecuritySettings(...), store, contents, data_dir)  # CaError
port = security.serve(grpc_server)   # the secure port with the certificate service
await security.revoke_token(token_id)   # kept in the store, refused by every replica
security.follow(change)                 # another replica's revocations (store feed)
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from controlplane.addresses import HostPort
from controlplane.ca.authority import CaError, CertificateAuthority
from controlplane.ca.serving import ServingCertificate
from controlplane.ca.stored import legacy_revocations, shared_authority
from controlplane.ca.tokens import IssuedToken, JoinTokens, TokenRejected
from controlplane.store import Change, Contents, Store
from meshlib.security.identity import SpiffeId

DEFAULT_CERT_TTL_S = 86400.0
DEFAULT_MAX_CERT_TTL_S = 2160 * 3600.0  # 90 days, Istio's MAX_WORKLOAD_CERT_TTL
_WILDCARDS = {"0.0.0.0", "::", "[::]", ""}

__all__ = [
    "CaError",
    "CertificateAuthority",
    "IssuedToken",
    "JoinTokens",
    "Security",
    "SecuritySettings",
    "TokenRejected",
]


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    address: HostPort
    trust_domain: str = "cluster.local"
    ca_cert: Path | None = None
    ca_key: Path | None = None
    cert_ttl_s: float = DEFAULT_CERT_TTL_S
    max_cert_ttl_s: float = DEFAULT_MAX_CERT_TTL_S


class Security:
    """The CA, its join tokens and the serving certificate of the secure address."""

    def __init__(
        self,
        settings: SecuritySettings,
        ca: CertificateAuthority,
        tokens: JoinTokens,
        store: Store,
    ) -> None:
        self.settings = settings
        self.ca = ca
        self.tokens = tokens
        self.store = store
        self.serving = ServingCertificate(ca, settings.address.host)
        self._port: int | None = None

    @classmethod
    async def open(
        cls, settings: SecuritySettings, store: Store, contents: Contents, data_dir: Path | None
    ) -> Security:
        """The CA shared through ``store`` (opened, ``contents`` its load) and the revoked
        tokens it holds (CaError naming the flag, file or store; StoreError)."""
        if settings.cert_ttl_s > settings.max_cert_ttl_s:
            raise CaError(
                f"--cert-ttl {settings.cert_ttl_s:g}s is longer than the maximum "
                f"{settings.max_cert_ttl_s:g}s (--max-cert-ttl)"
            )
        ca = await shared_authority(store, contents.ca, settings, data_dir)
        held = {record.id for record in contents.revoked_tokens}
        moved = [r for r in legacy_revocations(data_dir, time.time()) if r.id not in held]
        await store.revoke_tokens(moved)
        return cls(settings, ca, JoinTokens(ca, [*contents.revoked_tokens, *moved]), store)

    async def revoke_token(self, token_id: str) -> None:
        """Refuse ``token_id`` here and, through the store, at every replica (StoreError:
        nothing changed)."""
        record = self.tokens.revocation(token_id)
        await self.store.revoke_tokens([record])
        self.tokens.follow([record])

    def follow(self, change: Change) -> None:
        """Another replica's revocations, from the store's feed."""
        if change.tokens_revoked:
            self.tokens.follow(change.tokens_revoked)

    def serve(self, server: grpc.aio.Server) -> int:
        """Add the secure port to ``server``; the bound port (RuntimeError if it cannot)."""
        self._port = server.add_secure_port(
            str(self.settings.address), self.serving.server_credentials()
        )
        return self._port

    @property
    def address(self) -> HostPort:
        if self._port is None:
            raise RuntimeError("the secure xDS address is not bound yet")
        return self.settings.address.with_port(self._port)

    @property
    def advertised_address(self) -> str:
        """What tokens tell workloads to dial: the bound address, this host's name
        in place of a wildcard."""
        address = self.address
        if address.host in _WILDCARDS:
            return f"{socket.gethostname()}:{address.port}"
        return str(address)

    def issue_token(self, namespace: str, service_account: str, ttl_s: float) -> IssuedToken:
        identity = SpiffeId(self.ca.trust_domain, namespace, service_account)
        return self.tokens.issue(identity, ttl_s, self.advertised_address)
