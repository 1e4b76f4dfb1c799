"""The control plane's CA, join tokens and secure xDS address, set up together.

security = Security.create(SecuritySettings(...), data_dir)   # CaError
port = security.serve(grpc_server)   # the secure port with the certificate service
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import grpc

from controlplane.addresses import HostPort
from controlplane.ca.authority import CA_FOLDER, CaError, CertificateAuthority
from controlplane.ca.serving import ServingCertificate
from controlplane.ca.tokens import IssuedToken, JoinTokens, TokenRejected
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

    def __init__(self, settings: SecuritySettings, ca: CertificateAuthority, tokens: JoinTokens):
        self.settings = settings
        self.ca = ca
        self.tokens = tokens
        self.serving = ServingCertificate(ca, settings.address.host)
        self._port: int | None = None

    @classmethod
    def create(cls, settings: SecuritySettings, data_dir: Path | None) -> Security:
        """Load or make the CA (CaError naming the file when the material is unusable)."""
        if settings.cert_ttl_s > settings.max_cert_ttl_s:
            raise CaError(
                f"--cert-ttl {settings.cert_ttl_s:g}s is longer than the maximum "
                f"{settings.max_cert_ttl_s:g}s (--max-cert-ttl)"
            )
        ca = CertificateAuthority.load_or_create(
            settings.trust_domain,
            data_dir=data_dir,
            ca_cert=settings.ca_cert,
            ca_key=settings.ca_key,
            default_ttl_s=settings.cert_ttl_s,
            max_ttl_s=settings.max_cert_ttl_s,
        )
        folder = data_dir / CA_FOLDER if data_dir is not None else None
        if folder is not None:
            folder.mkdir(mode=0o700, exist_ok=True)
        try:
            tokens = JoinTokens(ca, folder)
        except ValueError as exc:
            raise CaError(str(exc)) from exc
        return cls(settings, ca, tokens)

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
