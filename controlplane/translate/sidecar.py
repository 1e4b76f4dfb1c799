"""The Envoy sidecar's outbound listener and its route table.

A node with ``"mesh.proxy": "sidecar"`` and ``"mesh.outbound_port": P`` in its
bootstrap metadata gets, instead of api_listeners, one listener
``mesh_outbound`` on 127.0.0.1:P (HTTP/1.1 and h2c: codec AUTO) whose
HttpConnectionManager fetches the route table ``mesh_outbound`` over ADS. That
table holds one virtual host per service with exactly the routes a proxyless
client gets, so Envoy and meshlib route alike. The listener is shared by every
service, so per-service filter settings (fault headers, rate limit buckets)
sit on each virtual host; the listener-level filter configs stay neutral. Route
timeouts take the form Envoy's router honours (:func:`.route_action.proxy_timeout_form`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.translate import naming
from controlplane.translate.common import ads_config_source, pack, socket_address
from controlplane.translate.errors import TranslationError
from controlplane.translate.http_filters import http_filters
from controlplane.translate.route_action import proxy_timeout_form
from controlplane.translate.routes import ServiceRouting, virtual_host

OUTBOUND_PORT_KEY = "mesh.outbound_port"
LOOPBACK = "127.0.0.1"
HCM_FILTER_NAME = "envoy.filters.network.http_connection_manager"


def outbound_port(metadata: Mapping[str, object]) -> int:
    """The sidecar's outbound port from node metadata (a number or a numeric string)."""
    value = metadata.get(OUTBOUND_PORT_KEY)
    port: int | None = None
    if isinstance(value, bool):
        port = None
    elif isinstance(value, int):
        port = value
    elif isinstance(value, float) and value.is_integer():
        port = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        port = int(value.strip())
    if port is None or not 1 <= port <= 65535:
        raise TranslationError(
            f"sidecar node metadata {OUTBOUND_PORT_KEY!r}: need a port in 1..65535, got {value!r}"
        )
    return port


def build_sidecar_listener(port: int, routings: Sequence[ServiceRouting]) -> listener_pb2.Listener:
    name = naming.SIDECAR_OUTBOUND
    manager = hcm_pb2.HttpConnectionManager(
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=name),
        http_filters=_filters(routings),
    )
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name=HCM_FILTER_NAME, typed_config=pack(manager))]
    )
    return listener_pb2.Listener(
        name=name,
        address=socket_address(LOOPBACK, port),
        filter_chains=[chain],
        traffic_direction=base_pb2.OUTBOUND,
    )


def build_sidecar_route_configuration(
    routings: Sequence[ServiceRouting],
) -> route_pb2.RouteConfiguration:
    proxied = [replace(r, routes=tuple(map(proxy_timeout_form, r.routes))) for r in routings]
    return route_pb2.RouteConfiguration(
        name=naming.SIDECAR_OUTBOUND,
        virtual_hosts=[virtual_host(r, host_filter_configs=True) for r in proxied],
    )


def _filters(routings: Sequence[ServiceRouting]) -> list[hcm_pb2.HttpFilter]:
    """Neutral listener-level configs: the virtual hosts and routes carry the settings."""
    fault = fault_pb2.HTTPFault() if any(r.needs_fault_filter for r in routings) else None
    rate_limit = None
    if any(r.rate_limit is not None for r in routings):
        rate_limit = local_rate_limit_pb2.LocalRateLimit(stat_prefix=naming.SIDECAR_OUTBOUND)
    return http_filters(fault=fault, rate_limit=rate_limit)
