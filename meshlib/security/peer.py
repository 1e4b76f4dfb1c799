"""The caller's TLS side, read from what the server framework reports of the peer.

- grpcio: ``context.auth_context()`` (``transport_security_type`` ``ssl``,
  ``x509_pem_cert``, ``peer_spiffe_id``): :func:`grpc_peer_tls`;
- ASGI: the TLS extension, ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM,
  the peer's certificate first; :mod:`meshlib.transport.uvicorn_tls` fills it in):
  :func:`asgi_peer_tls`.

None means plaintext; a :class:`PeerTls` without a certificate means TLS without a
client certificate. A certificate that cannot be parsed gives no names (it then
matches no principal), never an exception. :func:`peer_identity` is the public
one-liner for handlers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

_SPIFFE = "spiffe://"


@dataclass(frozen=True, slots=True)
class PeerTls:
    """The caller's certificate names: URI SANs, DNS SANs, RFC 4514 subject."""

    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()
    subject: str = ""

    @property
    def spiffe_id(self) -> str | None:
        """The certificate's SPIFFE ID (its ``spiffe://`` URI SAN), if any."""
        return next((uri for uri in self.uri_sans if uri.startswith(_SPIFFE)), None)

    @property
    def principal(self) -> str | None:
        """The SPIFFE ID as Istio's policies write it (without ``spiffe://``)."""
        spiffe = self.spiffe_id
        return None if spiffe is None else spiffe[len(_SPIFFE) :]


_NO_CERTIFICATE = PeerTls()


def peer_tls_from_certificate(certificate: x509.Certificate) -> PeerTls:
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(names.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(names.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        subject = certificate.subject.rfc4514_string()
    except ValueError:
        subject = ""
    return PeerTls(uri_sans=uris, dns_sans=dns, subject=subject)


@functools.lru_cache(maxsize=1024)
def peer_tls_from_pem(pem: str | bytes) -> PeerTls:
    """The first certificate of a PEM text (no names when it cannot be read); cached, as
    every call on a connection reports the same certificate (a parse costs ~20 µs)."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        return peer_tls_from_certificate(x509.load_pem_x509_certificate(data))
    except ValueError:
        return _NO_CERTIFICATE


def grpc_peer_tls(context: Any) -> PeerTls | None:
    """What grpcio's ``context.auth_context()`` says of the peer (None: not TLS)."""
    try:
        auth: Mapping[str, Sequence[bytes]] = context.auth_context() or {}
    except (AttributeError, RuntimeError, ValueError):
        return None
    kind = auth.get("transport_security_type") or ()
    if b"ssl" not in kind and b"tls" not in kind:
        return None
    pems = auth.get("x509_pem_cert") or ()
    if pems:
        return peer_tls_from_pem(pems[0])
    spiffe = auth.get("peer_spiffe_id") or ()
    if spiffe:
        return PeerTls(uri_sans=(spiffe[0].decode("utf-8", "replace"),))
    return _NO_CERTIFICATE


def asgi_peer_tls(scope: Mapping[str, Any]) -> PeerTls | None:
    """What the ASGI TLS extension says of the peer (None: not TLS)."""
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping):
        return None
    chain = tls.get("client_cert_chain") or ()
    if chain and isinstance(chain, Sequence) and isinstance(chain[0], (str, bytes)):
        return peer_tls_from_pem(chain[0])
    return _NO_CERTIFICATE


def asgi_sni(scope: Mapping[str, Any]) -> str:
    """The SNI the ASGI TLS extension reports ("" when it does not)."""
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    name = tls.get("server_name") if isinstance(tls, Mapping) else None
    return name if isinstance(name, str) else ""


def peer_identity(context_or_scope: Any) -> str | None:
    """The caller's SPIFFE ID: from a gRPC servicer context or an ASGI scope (None:
    plaintext, or a certificate without one)."""
    if isinstance(context_or_scope, Mapping):
        tls = asgi_peer_tls(context_or_scope)
    elif callable(getattr(context_or_scope, "auth_context", None)):
        tls = grpc_peer_tls(context_or_scope)
    else:
        raise TypeError(
            f"peer_identity({type(context_or_scope).__name__}): give a gRPC servicer "
            "context (sync or aio) or an ASGI scope"
        )
    return None if tls is None else tls.spiffe_id
