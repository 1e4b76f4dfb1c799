"""``ssl.SSLContext`` objects from the workload certificate, for servers that take one.

Python's ssl module loads a key only from a file. The key is written encrypted
(PKCS#8 under a random password that stays in memory) into a private temporary
folder (0700, in ``/dev/shm`` where there is one, so not on disk), loaded, and
the folder removed at once: what touched the file system cannot be used alone.

:class:`RotatingServerContext` is an mTLS server context that follows a
:class:`~meshlib.security.keeper.CertificateKeeper`: each new certificate gets a
context of its own, built on the keeper's thread, and the server context's SNI
callback (called for every handshake, with or without a server name) moves the
new connection onto the newest one. Established connections keep theirs.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from meshlib.errors import SecurityError
from meshlib.observability.logging import get_logger
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)

_MEMORY_FOLDER = "/dev/shm"


def load_certificate(context: ssl.SSLContext, certificate: WorkloadCertificate) -> None:
    """Make ``context`` present ``certificate`` (its chain and key); SecurityError if
    OpenSSL refuses them."""
    password = secrets.token_bytes(32)
    try:
        key = serialization.load_pem_private_key(certificate.key_pem, password=None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"workload key: not a usable PEM private key ({exc})") from exc
    parent = _MEMORY_FOLDER if os.path.isdir(_MEMORY_FOLDER) else None
    with tempfile.TemporaryDirectory(prefix="meshlib-tls-", dir=parent) as folder:
        chain_file, key_file = Path(folder, "chain.pem"), Path(folder, "key.pem")
        chain_file.write_bytes(certificate.chain_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(encrypted)
        try:
            context.load_cert_chain(chain_file, key_file, password=password)
        except ssl.SSLError as exc:
            raise SecurityError(f"workload certificate: OpenSSL refused it ({exc})") from exc


def mtls_server_context(
    certificate: WorkloadCertificate, alpn_protocols: Sequence[str] = ()
) -> ssl.SSLContext:
    """A TLS server context presenting ``certificate`` and requiring a client
    certificate that chains to its mesh root (TLS 1.2 at least)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=certificate.root_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise SecurityError(f"mesh root certificate: OpenSSL refused it ({exc})") from exc
    load_certificate(context, certificate)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


class RotatingServerContext:
    """An mTLS server :attr:`context` that presents the keeper's newest certificate to
    each new connection (see the module docstring); :meth:`close` stops following."""

    def __init__(self, keeper: CertificateKeeper, alpn_protocols: Sequence[str] = ()) -> None:
        self._alpn = tuple(alpn_protocols)
        self._lock = threading.Lock()
        first = keeper.current()  # SecurityError when there is none yet
        self.context = mtls_server_context(first, self._alpn)
        self._newest = self.context
        self._newest_certificate = first
        self.context.sni_callback = self._pick
        self._unsubscribe = keeper.subscribe(self._follow)

    @property
    def certificate(self) -> WorkloadCertificate:
        """The certificate new connections get."""
        with self._lock:
            return self._newest_certificate

    def _follow(self, certificate: WorkloadCertificate) -> None:
        context = mtls_server_context(certificate, self._alpn)
        with self._lock:
            self._newest, self._newest_certificate = context, certificate
        log.info("server_tls_context_rotated", serial=format(certificate.serial, "x"))

    def _pick(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        newest = self._newest
        if newest is not self.context:
            connection.context = newest

    def close(self) -> None:
        self._unsubscribe()


__all__ = ["RotatingServerContext", "load_certificate", "mtls_server_context"]
