"""LDS: one api_listener per service, as proxyless gRPC clients expect it.

The listener holds an HttpConnectionManager that fetches its route table over
ADS (RDS) and ends with the router filter.
"""

from __future__ import annotations

from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.translate import naming
from controlplane.translate.common import ads_config_source
from controlplane.translate.services import MeshService

ROUTER_FILTER_NAME = "envoy.filters.http.router"


def build_listener(service: MeshService) -> listener_pb2.Listener:
    name = naming.listener_name(service.host, service.number)
    manager = http_connection_manager(
        stat_prefix=name,
        route_config_name=naming.route_config_name(service.host, service.number),
    )
    return listener_pb2.Listener(
        name=name,
        api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager)),
    )


def http_connection_manager(
    *, stat_prefix: str, route_config_name: str
) -> hcm_pb2.HttpConnectionManager:
    """An HCM with RDS over ADS and the router as its only (last) filter."""
    return hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=route_config_name),
        http_filters=[router_filter()],
    )


def router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=ROUTER_FILTER_NAME, typed_config=pack(router_pb2.Router()))


def pack(message: Message) -> any_pb2.Any:
    """Pack into an Any deterministically (map fields in a fixed order)."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed
