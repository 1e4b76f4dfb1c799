"""Applying a cluster's connection-pool settings to the endpoint clients.

httpx endpoint transports: ``Cluster.connect_timeout`` caps the connect phase
of each request (the caller's timeout still governs the rest, and a shorter
connect timeout of the caller's wins), ``HttpProtocolOptions.idle_timeout``
becomes the pool's ``keepalive_expiry``, and ``upstream_protocol: HTTP2``
speaks HTTP/2 with prior knowledge (h2c) when the ``h2`` package is
installed (else HTTP/1.1, logged once).

gRPC sub-channels: the idle timeout becomes ``grpc.client_idle_timeout_ms``
(the channel drops its connection when no call ran that long); the connect
timeout becomes ``grpc.min_reconnect_backoff_ms``, which grpc-core uses as the
minimum time it gives one connection attempt (an attempt's deadline is the
later of that and the current reconnect backoff).

What no client can apply (``max_requests_per_connection``,
``max_connection_duration``) is logged once per cluster as
``cluster_setting_not_applied``; Envoy sidecars apply it.

mTLS (settings with ``tls`` and the workload ``certificate``): the httpx transport
gets the cluster's :class:`~meshlib.transport.endpoint_tls.EndpointSSLContext` and
runs TLS on every connection it opens (:mod:`.tls_backend`); the gRPC sub-channel is a secure
channel with the certificate and the endpoint's expected peer name
(:mod:`meshlib.transport.endpoint_tls`).

Without the mesh's TLS and without the user's ``verify`` / ``cert``, every endpoint
transport (and the pass-through) shares httpx's default TLS context
(:func:`shared_default_tls`): httpx would parse the CA bundle again for each
transport (about 0.8 MB each), and meshlib makes one transport per endpoint.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import ssl
import threading
from collections.abc import Coroutine, Mapping
from typing import Any

import httpx

from meshlib.observability.logging import get_logger
from meshlib.routing.connection_pool import PoolSettings
from meshlib.transport.endpoint_tls import (
    EndpointSSLContext,
    endpoint_ssl_context,
    grpc_endpoint_credentials,
)
from meshlib.transport.tls_backend import install_tls
from meshlib.xds_client.resources import Endpoint

log = get_logger(__name__)

#: grpc-core's cap for integer channel arguments ("never").
_GRPC_INT_MAX = 2**31 - 1
#: grpc-core's floor for ``grpc.client_idle_timeout_ms``.
_GRPC_MIN_IDLE_MS = 1000

_reported: set[tuple[str, str, str]] = set()
_reported_lock = threading.Lock()


def has_h2() -> bool:
    """Whether httpx can speak HTTP/2 here (the optional ``h2`` package)."""
    return importlib.util.find_spec("h2") is not None


def report_not_applied(settings: PoolSettings, client: str) -> None:
    """Log, once per (cluster, setting, client), each setting ``client`` leaves to Envoy."""
    skipped = list(settings.not_applied)
    if client == "httpx" and settings.http2 and not has_h2():
        skipped.append("upstream_protocol")
    for setting in skipped:
        key = (settings.cluster, setting, client)
        with _reported_lock:
            if key in _reported:
                continue
            _reported.add(key)
        reason = (
            "the h2 package is not installed: HTTP/1.1 is used"
            if setting == "upstream_protocol"
            else "meshlib cannot apply it (Envoy applies it)"
        )
        log.warning(
            "cluster_setting_not_applied",
            cluster=settings.cluster,
            setting=setting,
            client=client,
            reason=reason,
        )


def shared_default_tls(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for an httpx transport, where httpx's default TLS (``verify=True``, no
    ``cert``) is one context shared per (``trust_env``, HTTP/2, CA environment): the
    same context httpx would build, parsed once. HTTP/2 is in the key because httpcore
    sets the context's ALPN protocols from it at every connect."""
    if "verify" in options or "cert" in options:
        return dict(options)
    trust_env = bool(options.get("trust_env", True))
    cert_file = os.environ.get("SSL_CERT_FILE") if trust_env else None
    cert_dir = os.environ.get("SSL_CERT_DIR") if trust_env else None
    http2 = bool(options.get("http2", False))
    return {**options, "verify": _default_tls(trust_env, http2, cert_file, cert_dir)}


@functools.lru_cache(maxsize=8)
def _default_tls(
    trust_env: bool, _http2: bool, _cert_file: str | None, _cert_dir: str | None
) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=trust_env)


def httpx_pool_options(base: Mapping[str, Any], settings: PoolSettings) -> dict[str, Any]:
    """Keyword arguments for one endpoint's httpx transport: ``base`` (the user's
    ``pool_options``) with the cluster's idle timeout and protocol."""
    options = dict(base)
    if settings.idle_timeout_s is not None:
        limits = options.get("limits", httpx.Limits())
        options["limits"] = httpx.Limits(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=settings.idle_timeout_s or None,  # 0: never expire
        )
    if settings.http2 and has_h2():
        options["http1"] = False  # HTTP/2 with prior knowledge on plain connections
        options["http2"] = True
    if settings.certificate is not None:  # the mesh's TLS, not the user's verify / cert
        options.pop("cert", None)
        options["verify"] = endpoint_ssl_context(settings)
    report_not_applied(settings, "httpx")
    return shared_default_tls(options)


def capped_connect(request: httpx.Request, connect_timeout_s: float | None) -> None:
    """Cap the connect phase of ``request`` at the cluster's connect timeout (in place;
    the extensions dict is replaced, never mutated: it may be the caller's)."""
    if connect_timeout_s is None:
        return
    extensions = request.extensions
    timeout = extensions.get("timeout")
    if timeout is None:
        request.extensions = {**extensions, "timeout": {"connect": connect_timeout_s}}
        return
    current = timeout.get("connect")
    if current is None or current > connect_timeout_s:
        request.extensions = {**extensions, "timeout": {**timeout, "connect": connect_timeout_s}}


class ClusterHTTPTransport(httpx.HTTPTransport):
    """An endpoint's httpx transport that caps each request's connect timeout (and
    speaks mTLS when ``verify`` is an :class:`EndpointSSLContext`)."""

    def __init__(self, connect_timeout_s: float | None, **options: Any) -> None:
        super().__init__(**options)
        self.connect_timeout_s = connect_timeout_s
        context = options.get("verify")
        if isinstance(context, EndpointSSLContext):
            install_tls(self, context)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        capped_connect(request, self.connect_timeout_s)
        return super().handle_request(request)


class AsyncClusterHTTPTransport(httpx.AsyncHTTPTransport):
    """Async twin of :class:`ClusterHTTPTransport`."""

    def __init__(self, connect_timeout_s: float | None, **options: Any) -> None:
        super().__init__(**options)
        self.connect_timeout_s = connect_timeout_s
        context = options.get("verify")
        if isinstance(context, EndpointSSLContext):
            install_tls(self, context)

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        # httpx's own coroutine, returned (not awaited here): one await level less to
        # resume at every wake-up of the request.
        capped_connect(request, self.connect_timeout_s)
        return super().handle_async_request(request)


def grpc_pool_options(settings: PoolSettings) -> list[tuple[str, int]]:
    """Channel arguments for one endpoint's gRPC sub-channel from the cluster's settings."""
    options: list[tuple[str, int]] = []
    if settings.connect_timeout_s is not None:
        options.append(
            ("grpc.min_reconnect_backoff_ms", _grpc_ms(settings.connect_timeout_s, minimum=1))
        )
    if settings.idle_timeout_s is not None:
        idle_ms = (
            _grpc_ms(settings.idle_timeout_s, minimum=_GRPC_MIN_IDLE_MS)
            if settings.idle_timeout_s > 0
            else _GRPC_INT_MAX
        )
        options.append(("grpc.client_idle_timeout_ms", idle_ms))
    report_not_applied(settings, "grpc")
    return options


def open_endpoint_channel(
    module: Any, endpoint: Endpoint, options: list[tuple[str, Any]], settings: PoolSettings
) -> Any:
    """One endpoint's sub-channel (``module``: ``grpc`` or ``grpc.aio``), secure when
    the cluster's settings carry mTLS."""
    if settings.certificate is None:
        return module.insecure_channel(endpoint.authority, options=options)
    credentials, tls_options = grpc_endpoint_credentials(endpoint, settings)
    # grpc-core accepts a call's :authority on an overridden TLS target only when it
    # equals the channel's authority without its port: send the host alone.
    secured = [
        (key, _host_only(value) if key == "grpc.default_authority" else value)
        for key, value in options
    ]
    return module.secure_channel(endpoint.authority, credentials, options=secured + tls_options)


def _host_only(authority: str) -> str:
    host, colon, port = authority.rpartition(":")
    if not colon or not port.isdigit() or (host.count(":") and not host.endswith("]")):
        return authority
    return host


def _grpc_ms(seconds: float, *, minimum: int) -> int:
    return max(minimum, min(_GRPC_INT_MAX, round(seconds * 1000)))
