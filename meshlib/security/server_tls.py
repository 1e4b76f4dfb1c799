"""gRPC server credentials from the workload certificate: mTLS that rotates in place.

    server.add_secure_port(addr, mesh.server_credentials())

The server presents the keeper's current certificate and requires a client
certificate that chains to the mesh root (Istio's STRICT). grpc asks the fetcher
before each handshake: it hands over a new configuration when the keeper has a
newer certificate (or root) and None otherwise, so new connections get the new
certificate while established ones go on undisturbed — no restart, no new port.
"""

from __future__ import annotations

import threading

import grpc

from meshlib.errors import SecurityError
from meshlib.observability.logging import get_logger
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)


def require_identity(keeper: CertificateKeeper | None, what: str) -> CertificateKeeper:
    """``keeper``, or the SecurityError that says how to give a mesh an identity."""
    if keeper is None:
        raise SecurityError(
            f"{what}: this mesh has no identity, so there is no certificate to serve TLS "
            "with: give Mesh(token=...), MESH_TOKEN or MESH_TOKEN_FILE, or a bootstrap "
            "whose certificate_providers name meshctl agent's files "
            "(`meshctl bootstrap --cert-dir`)"
        )
    return keeper


def _configuration(certificate: WorkloadCertificate) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(certificate.key_pem, certificate.chain_pem)], root_certificates=certificate.root_pem
    )


class RotatingServerCertificate:
    """The certificate configuration grpc's fetcher hands out, following a keeper."""

    def __init__(self, keeper: CertificateKeeper) -> None:
        self._keeper = keeper
        self._lock = threading.Lock()
        self.served = keeper.current()  # SecurityError when there is none yet

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's certificate-configuration fetcher: a new configuration once the
        keeper's certificate changed, else None (keep the one in force)."""
        try:
            current = self._keeper.current()
        except Exception as exc:  # never fail a handshake over the keeper: keep serving
            log.warning("server_certificate_unavailable", error=str(exc))
            return None
        with self._lock:
            if current is self.served:
                return None
            self.served = current
        log.info(
            "server_certificate_rotated",
            identity=str(current.identity),
            serial=format(current.serial, "x"),
        )
        return _configuration(current)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self.served),
            self.fetch,  # type: ignore[arg-type]  # grpc takes None as "keep it"
            require_client_authentication=True,
        )


def mtls_server_credentials(keeper: CertificateKeeper | None) -> grpc.ServerCredentials:
    """Server credentials presenting ``keeper``'s certificate and requiring a client
    certificate from the same mesh root; rotated with the keeper (see module doc).
    SecurityError without an identity (``keeper`` None) or a certificate yet."""
    keeper = require_identity(keeper, "server_credentials()")
    return RotatingServerCertificate(keeper).credentials()


__all__ = ["RotatingServerCertificate", "mtls_server_credentials", "require_identity"]
