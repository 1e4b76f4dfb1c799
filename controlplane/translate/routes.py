"""RDS: one route table per service, one virtual host, one catch-all route.

Issue 3 (VirtualService) replaces :func:`default_routes` with the user's
routes; the virtual host and its domains stay.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2

from controlplane.translate import naming
from controlplane.translate.services import MeshService


def build_route_configuration(service: MeshService) -> route_pb2.RouteConfiguration:
    host, port = service.host, service.number
    virtual_host = route_components_pb2.VirtualHost(
        name=naming.virtual_host_name(host, port),
        domains=list(naming.virtual_host_domains(host, port)),
        routes=default_routes(naming.cluster_name(host, port)),
    )
    return route_pb2.RouteConfiguration(
        name=naming.route_config_name(host, port), virtual_hosts=[virtual_host]
    )


def default_routes(cluster: str) -> list[route_components_pb2.Route]:
    """Everything (prefix "/") to the service's own cluster."""
    return [
        route_components_pb2.Route(
            name="default",
            match=route_components_pb2.RouteMatch(prefix="/"),
            route=route_components_pb2.RouteAction(cluster=cluster),
        )
    ]
