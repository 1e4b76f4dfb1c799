"""httpx endpoint connections over mTLS, at the connection (not the URL).

The endpoint transports keep sending ``http://`` requests (the fast path and the
retries build them); their httpcore pool gets a network backend that opens the
TCP connection and at once runs the TLS handshake with the cluster's
:class:`~meshlib.transport.endpoint_tls.EndpointSSLContext` (which checks the peer's
SPIFFE ID). A handshake failure is httpcore's ConnectError, so a refused peer is
a connect failure for retries and outlier detection.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from meshlib.errors import SecurityError
from meshlib.transport._httpx_internals import wrap_network_backend


class TlsNetworkBackend(httpcore.NetworkBackend):
    """``inner``'s TCP connections, each wrapped in TLS with ``context``."""

    def __init__(self, inner: httpcore.NetworkBackend, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._context = context

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return stream.start_tls(self._context, server_hostname=host, timeout=timeout)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return stream.start_tls(self._context, timeout=timeout)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncTlsNetworkBackend(httpcore.AsyncNetworkBackend):
    """Async twin of :class:`TlsNetworkBackend`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._context = context

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return await stream.start_tls(self._context, server_hostname=host, timeout=timeout)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return await stream.start_tls(self._context, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def install_tls(
    transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport, context: ssl.SSLContext
) -> None:
    """Make ``transport`` connect over TLS with ``context`` (call from its constructor).

    Raises :class:`~meshlib.errors.SecurityError` when this httpx / httpcore keeps its
    pool or backend elsewhere: the transport is refused rather than send plaintext
    (:func:`~meshlib.transport._httpx_internals.wrap_network_backend`)."""
    backend_class: Callable[[Any, ssl.SSLContext], object] = (
        AsyncTlsNetworkBackend
        if isinstance(transport, httpx.AsyncHTTPTransport)
        else TlsNetworkBackend
    )
    if not wrap_network_backend(transport, lambda inner: backend_class(inner, context)):
        raise SecurityError(
            f"httpx {httpx.__version__} / httpcore {httpcore.__version__} keep their"
            " connection pool's network backend where meshlib cannot find it, so mTLS"
            " cannot be carried: use the httpx and httpcore versions meshlib supports"
        )
