"""Trust on first contact, pinned by the join token's CA fingerprint.

A workload with only a token does not know the mesh root yet. It opens TLS to the
control plane's secure address without checking the server, takes the chain the
server presents (the control plane sends its root with its serving chain), and
keeps the certificate whose SHA-256 matches the token's ``ca`` claim; every call
after that verifies the server against that root (kubeadm's
``--discovery-token-ca-cert-hash``). A server that cannot present that root is
refused.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from cryptography import x509

from meshlib.errors import CertificateRequestError, CertificateServiceUnreachableError
from meshlib.security.pki import certificate_pem, fingerprint

CONNECT_TIMEOUT_S = 10.0


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The peer's chain as DER (Python 3.13's public call; the same C call before it)."""
    public = getattr(tls, "get_unverified_chain", None)
    source: Any = tls if public is not None else tls._sslobj  # type: ignore[attr-defined]
    chain: list[Any] = source.get_unverified_chain() or []
    der_format: int = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
    return [c if isinstance(c, bytes) else c.public_bytes(der_format) for c in chain]


def presented_chain(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> list[bytes]:
    """The certificates a TLS server presents, unverified (DER)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return _unverified_chain(tls)


def pinned_root(address: str, ca_fingerprint: str) -> bytes:
    """The root PEM the server at ``address`` presents whose fingerprint is
    ``ca_fingerprint``; CertificateRequestError when it cannot be had."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        chain = presented_chain(host, int(port))
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateRequestError(
            f"control plane {address}: cannot open TLS to learn its CA: {exc}"
        ) from exc
    except OSError as exc:  # refused, timed out, no such host (yet): it may still start
        raise CertificateServiceUnreachableError(
            f"control plane {address} could not be reached to learn its CA: {exc}"
        ) from exc
    for der in chain:
        certificate = x509.load_der_x509_certificate(der)
        if fingerprint(certificate) == ca_fingerprint:
            return certificate_pem(certificate)
    raise CertificateRequestError(
        f"control plane {address}: does not present the CA the token names "
        f"(sha256 {ca_fingerprint}): not the control plane that issued the token"
    )
