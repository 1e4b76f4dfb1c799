"""LDS: one api_listener per service, as proxyless gRPC clients expect it.

The listener holds an HttpConnectionManager that fetches its route table over
ADS (RDS) and ends with the router filter. One listener serves one service,
so the service's fault-header and rate limit settings are the listener-level
configs of those filters (see :mod:`.http_filters`).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.translate import naming
from controlplane.translate.common import ads_config_source, pack
from controlplane.translate.faults import local_rate_limit
from controlplane.translate.http_filters import http_filters, router_filter
from controlplane.translate.routes import ServiceRouting
from controlplane.translate.services import MeshService

__all__ = ["build_listener", "http_connection_manager"]


def build_listener(
    service: MeshService, routing: ServiceRouting | None = None
) -> listener_pb2.Listener:
    name = naming.listener_name(service.host, service.number)
    filters = _service_filters(routing, name) if routing is not None else None
    manager = http_connection_manager(
        stat_prefix=name,
        route_config_name=naming.route_config_name(service.host, service.number),
        filters=filters,
    )
    return listener_pb2.Listener(
        name=name,
        api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager)),
    )


def http_connection_manager(
    *,
    stat_prefix: str,
    route_config_name: str,
    filters: Sequence[hcm_pb2.HttpFilter] | None = None,
) -> hcm_pb2.HttpConnectionManager:
    """An HCM with RDS over ADS and ``filters`` (default: the router alone)."""
    return hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=route_config_name),
        http_filters=list(filters) if filters is not None else [router_filter()],
    )


def _service_filters(routing: ServiceRouting, stat_prefix: str) -> list[hcm_pb2.HttpFilter]:
    fault = None
    if routing.needs_fault_filter:
        fault = routing.header_faults or fault_pb2.HTTPFault()
    bucket = None
    if routing.rate_limit is not None:
        where = f"{routing.origin}: local rate limit"
        bucket = local_rate_limit(routing.rate_limit, stat_prefix, where)
    return http_filters(fault=fault, rate_limit=bucket)
