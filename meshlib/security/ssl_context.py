"""An mTLS server ``ssl.SSLContext`` from the workload certificate, for servers that
take one (uvicorn), rotating with the keeper.

The key is loaded from memory (:mod:`.memfd_keys`: it never touches a file system).
:class:`RotatingServerContext` follows a
:class:`~meshlib.security.keeper.CertificateKeeper`: each new certificate gets a
context of its own, built on the keeper's thread, and the server context's SNI
callback (called for every handshake, with or without a server name) moves the
new connection onto the newest one. Established connections keep theirs.
"""

from __future__ import annotations

import ssl
import threading
import weakref
from collections.abc import Sequence

from meshlib.errors import SecurityError
from meshlib.observability.logging import get_logger
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.memfd_keys import load_workload_certificate
from meshlib.security.pki import WorkloadCertificate, certificate_pem

log = get_logger(__name__)

#: The certificate each context of ours presents (the leaf, PEM), for the ASGI TLS
#: extension's ``server_cert``: a connection's context tells which one it got.
_PRESENTED: weakref.WeakKeyDictionary[ssl.SSLContext, str] = weakref.WeakKeyDictionary()


def presented_certificate(context: ssl.SSLContext) -> str | None:
    """The leaf certificate (PEM) a context made here presents; None for other contexts."""
    return _PRESENTED.get(context)


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
    load_workload_certificate(context, certificate)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    _PRESENTED[context] = certificate_pem(certificate.leaf).decode("ascii")
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


__all__ = ["RotatingServerContext", "mtls_server_context", "presented_certificate"]
