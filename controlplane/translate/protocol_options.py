"""The upstream HTTP protocol of a cluster, and the connection-pool knobs that
live in Envoy's ``HttpProtocolOptions`` extension.

Envoy sidecars need to be told to speak HTTP/2 to gRPC backends; the service
port's protocol says which (as Istio does): GRPC, GRPC-WEB and HTTP2 ports get
explicit HTTP/2, HTTP ports HTTP/1.1, anything else (unknown, e.g. implicit
services from registrations) uses the caller's own protocol. From the
DestinationRule: http.maxRequestsPerConnection, http.idleTimeout and
tcp.maxConnectionDuration -> ``common_http_protocol_options``.

gRPC and meshlib ignore this extension (they choose the protocol themselves).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as options_pb2
from google.protobuf import duration_pb2

from controlplane.traffic_model import ConnectionPoolSettings
from controlplane.translate.common import duration, pack
from controlplane.translate.errors import TranslationError

HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP2_PROTOCOLS = frozenset({"GRPC", "GRPC-WEB", "HTTP2"})
_HTTP1_PROTOCOLS = frozenset({"HTTP"})


def apply_protocol_options(
    cluster: cluster_pb2.Cluster,
    protocol: str,
    pool: ConnectionPoolSettings | None,
    where: str,
) -> None:
    options = options_pb2.HttpProtocolOptions()
    if protocol.upper() in _HTTP2_PROTOCOLS:
        options.explicit_http_config.http2_protocol_options.SetInParent()
    elif protocol.upper() in _HTTP1_PROTOCOLS:
        options.explicit_http_config.http_protocol_options.SetInParent()
    else:
        options.use_downstream_protocol_config.http_protocol_options.SetInParent()
        options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    if pool is not None:
        _common_options(options.common_http_protocol_options, pool, where)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(pack(options))


def _common_options(
    common: protocol_pb2.HttpProtocolOptions, pool: ConnectionPoolSettings, where: str
) -> None:
    http, tcp = pool.http, pool.tcp
    if http is not None and http.max_requests_per_connection:
        if http.max_requests_per_connection < 0:
            raise TranslationError(
                f"{where}: connectionPool.http.maxRequestsPerConnection must not be negative"
            )
        common.max_requests_per_connection.value = http.max_requests_per_connection
    if http is not None and http.idle_timeout_s is not None:
        common.idle_timeout.CopyFrom(_positive(http.idle_timeout_s, "http.idleTimeout", where))
    if tcp is not None and tcp.max_connection_duration_s is not None:
        common.max_connection_duration.CopyFrom(
            _positive(tcp.max_connection_duration_s, "tcp.maxConnectionDuration", where)
        )


def _positive(seconds: float, field: str, where: str) -> duration_pb2.Duration:
    if seconds < 0:
        raise TranslationError(f"{where}: connectionPool.{field} must not be negative")
    return duration(seconds)
