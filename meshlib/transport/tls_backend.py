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
from collections.abc import Iterable
from typing import Any

import httpcore

from meshlib.errors import SecurityError


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


def install_tls(pool: Any, context: ssl.SSLContext, *, is_async: bool) -> None:
    """Make the httpcore ``pool`` of an httpx transport connect over TLS."""
    inner = getattr(pool, "_network_backend", None)
    if inner is None:  # httpcore changed: fail loudly rather than send plaintext
        raise SecurityError("this httpcore version cannot carry meshlib's mTLS backend")
    backend_class = AsyncTlsNetworkBackend if is_async else TlsNetworkBackend
    pool._network_backend = backend_class(inner, context)
