"""Builders of valid Envoy v3 resources for tests; tweak the result to make it invalid."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from meshlib.xds_client.resources import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

__all__ = [
    "CDS",
    "EDS",
    "LDS",
    "RDS",
    "cluster",
    "cluster_load_assignment",
    "hcm",
    "listener",
    "pack",
    "route_config",
]

LDS, RDS, CDS, EDS = LISTENER_TYPE_URL, ROUTE_CONFIG_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL


def pack(message: Any) -> Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def router_filter() -> Any:
    return hcm_pb2.HttpFilter(
        name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())
    )


def hcm(route_config_name: str = "rc") -> Any:
    return hcm_pb2.HttpConnectionManager(
        rds=hcm_pb2.Rds(
            route_config_name=route_config_name,
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource()
            ),
        ),
        http_filters=[router_filter()],
    )


def listener(name: str = "svc:80", route_config_name: str = "rc", manager: Any = None) -> Any:
    manager = manager if manager is not None else hcm(route_config_name)
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager))
    )


def route_config(name: str = "rc", cluster: str = "c1", domains: tuple[str, ...] = ("*",)) -> Any:
    route = route_components_pb2.Route(
        name="default",
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster),
    )
    vhost = route_components_pb2.VirtualHost(name="vh", domains=list(domains), routes=[route])
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])


def cluster(name: str = "c1", service_name: str = "") -> Any:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            service_name=service_name,
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource()
            ),
        ),
    )


def socket(host: str, port: int) -> Any:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def lb_endpoint(host: str = "10.0.0.1", port: int = 8080, weight: int | None = None) -> Any:
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket(host, port)),
        health_status=health_check_pb2.HEALTHY,
    )
    if weight is not None:
        out.load_balancing_weight.value = weight
    return out


def locality_endpoints(
    zone: str = "z1", weight: int = 1, priority: int = 0, endpoints: tuple[Any, ...] | None = None
) -> Any:
    return endpoint_components_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(region="r", zone=zone),
        load_balancing_weight={"value": weight},
        priority=priority,
        lb_endpoints=list(endpoints if endpoints is not None else (lb_endpoint(),)),
    )


def cluster_load_assignment(name: str = "c1", *groups: Any) -> Any:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=list(groups or (locality_endpoints(),))
    )
