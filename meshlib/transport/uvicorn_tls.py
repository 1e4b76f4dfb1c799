"""uvicorn terminating mTLS with the workload certificate, the caller's certificate in scope.

    uvicorn.run(app, host="0.0.0.0", port=8443, **mesh.uvicorn_options())

Two of uvicorn's own options, nothing patched:

- ``ssl_context_factory``: a :class:`~meshlib.security.ssl_context.RotatingServerContext`
  (the workload certificate, client certificates required against the mesh root;
  a renewed certificate is presented to new connections, no restart);
- ``http``: uvicorn's HTTP protocol class (``"auto"``, ``"h11"``, ``"httptools"`` or a
  class) extended to fill in the ASGI TLS extension, which uvicorn does not: this is
  the one place meshlib reads the peer certificate off the connection
  (``transport.get_extra_info("ssl_object")``, once per connection, after the
  handshake) and hands it to the app as ``scope["extensions"]["tls"]``
  (``client_cert_chain``, ``client_cert_name``, ``server_cert``, ``tls_version``,
  ``cipher_suite``: the ASGI TLS extension spec). ``MeshMiddleware`` reads it from there
  (:func:`meshlib.security.peer.asgi_peer_tls`).

Feature detection: a uvicorn without ``ssl_context_factory`` (older than
:data:`UVICORN_MIN_VERSION`) is refused with a clear error naming the version needed
(or use ``ssl_certfile``/``ssl_keyfile``/``ssl_ca_certs`` from ``meshctl agent``'s folder
and restart on rotation, docs/security.md); a protocol class that does not keep the app
as ``self.app`` gets no extension, logged once, and its callers no identity.
WebSocket connections get no extension (MeshMiddleware passes them through).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography import x509

from meshlib.errors import SecurityError
from meshlib.observability.logging import get_logger
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.server_tls import require_identity
from meshlib.security.ssl_context import RotatingServerContext, presented_certificate

log = get_logger(__name__)

#: The first uvicorn with ``ssl_context_factory`` (pyproject's test extra pins the same floor).
UVICORN_MIN_VERSION = "0.47"

App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@functools.cache
def _cipher_id(name: str) -> int | None:
    """The IANA number of the cipher suite OpenSSL calls ``name`` (ssl names them only)."""
    every = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    every.set_ciphers("ALL:@SECLEVEL=0")
    for cipher in every.get_ciphers():
        if cipher.get("name") == name:
            return int(cipher["id"]) & 0xFFFF
    return None


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension for one established connection."""
    leaf = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if leaf:
        sent = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
        chain = [_pem(c) for c in sent()] if sent is not None else [_pem(leaf)]
        name = x509.load_der_x509_certificate(leaf).subject.rfc4514_string()
    cipher = ssl_object.cipher()
    return {
        "server_cert": presented_certificate(ssl_object.context),
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,  # a certificate that did not verify ended the handshake
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_id(cipher[0]) if cipher else None,
    }


def _with_tls(app: App, tls: dict[str, Any]) -> App:
    async def app_with_tls(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = dict(tls)
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return app_with_tls


_MADE: dict[str, type[asyncio.Protocol]] = {}
_WARNED: set[str] = set()


def _name(base: type[Any]) -> str:
    return f"{base.__module__}.{base.__qualname__}"


def tls_protocol(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``base`` (one of uvicorn's HTTP protocol classes) that puts the ASGI TLS extension
    in the scope of every request on a TLS connection (one class per base)."""
    made = _MADE.get(_name(base))
    if made is not None and made.__bases__ == (base,):
        return made

    def connection_made(self: Any, transport: asyncio.BaseTransport) -> None:
        base.connection_made(self, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        if not callable(getattr(self, "app", None)):
            _warn_no_app(base)
            return
        self.app = _with_tls(self.app, tls_extension(ssl_object))

    made = type(f"MeshTls{base.__name__}", (base,), {"connection_made": connection_made})
    _MADE[_name(base)] = made
    return made


def _warn_no_app(base: type[asyncio.Protocol]) -> None:
    if _name(base) in _WARNED:
        return
    _WARNED.add(_name(base))
    log.error(
        "asgi_tls_extension_unavailable",
        protocol=_name(base),
        reason="the protocol keeps no 'app' attribute: callers get no TLS identity",
    )


def _protocol_class(http: str | type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    if not isinstance(http, str):
        return http
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    if http not in HTTP_PROTOCOLS:
        raise ValueError(
            f"uvicorn_options(http={http!r}): uvicorn's http is one of {sorted(HTTP_PROTOCOLS)} "
            "or a protocol class"
        )
    try:
        found: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS[http])
    except ImportError as exc:
        raise ValueError(f"uvicorn_options(http={http!r}): uvicorn cannot load it ({exc})") from exc
    return found


def uvicorn_options(
    keeper: CertificateKeeper | None, *, http: str | type[asyncio.Protocol] = "auto"
) -> dict[str, Any]:
    """``uvicorn.run`` / ``uvicorn.Config`` keyword arguments for mTLS with ``keeper``'s
    certificate (see the module docstring); SecurityError without an identity or with a
    uvicorn that takes no SSL context."""
    keeper = require_identity(keeper, "uvicorn_options()")
    import uvicorn

    if "ssl_context_factory" not in inspect.signature(uvicorn.Config).parameters:
        raise SecurityError(
            f"uvicorn {uvicorn.__version__} takes no ssl_context_factory: "
            f"mesh.uvicorn_options() needs uvicorn>={UVICORN_MIN_VERSION}; or serve with "
            "ssl_certfile/ssl_keyfile/ssl_ca_certs from `meshctl agent --cert-dir` "
            "(ssl_cert_reqs=ssl.CERT_REQUIRED) and restart on rotation (docs/security.md)"
        )
    protocol = tls_protocol(_protocol_class(http))
    alpn = tuple(getattr(protocol, "alpn_protocols", None) or ())
    rotating = RotatingServerContext(keeper, alpn)  # SecurityError when no certificate yet

    def ssl_context_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return rotating.context

    return {"ssl_context_factory": ssl_context_factory, "http": protocol}


__all__ = ["UVICORN_MIN_VERSION", "tls_extension", "tls_protocol", "uvicorn_options"]
