"""Model builders for the route translation tests (VirtualService objects directly)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.model import (
    MeshConfig,
    NodeInfo,
    Resolution,
    ServiceEntry,
    ServicePort,
    WorkloadSpec,
)
from controlplane.traffic_model import (
    Destination,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
    VirtualServiceExtensions,
)
from controlplane.translate.http_resources import http_resources
from controlplane.translate.services import collect_services

PROXYLESS = NodeInfo(id="p1")


def sidecar(port: int = 15001, node_id: str = "s1") -> NodeInfo:
    return NodeInfo(id=node_id, metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": port})


def entry(host: str, *ports: int, address: str = "10.0.0.1") -> ServiceEntry:
    return ServiceEntry(
        name=host,
        namespace="default",
        hosts=(host,),
        ports=tuple(ServicePort(p, f"http-{p}", "HTTP") for p in ports or (8080,)),
        resolution=Resolution.STATIC,
        endpoints=(WorkloadSpec(address=address),),
    )


def to(
    host: str, subset: str = "", port: int | None = None, weight: int = 0
) -> HTTPRouteDestination:
    return HTTPRouteDestination(Destination(host, subset, port), weight=weight)


def vs(
    *rules: HTTPRoute,
    hosts: tuple[str, ...] = ("attendees",),
    name: str = "attendees",
    extensions: VirtualServiceExtensions | None = None,
) -> VirtualService:
    return VirtualService(
        name=name,
        namespace="default",
        hosts=hosts,
        http=rules,
        extensions=extensions or VirtualServiceExtensions(),
    )


def config(*virtual_services: VirtualService, entries: tuple[ServiceEntry, ...] = ()) -> MeshConfig:
    return MeshConfig(
        service_entries=entries or (entry("attendees", 8080), entry("sessions", 8080, 80)),
        virtual_services=virtual_services,
    )


def resources(
    mesh: MeshConfig, node: NodeInfo = PROXYLESS
) -> tuple[dict[str, listener_pb2.Listener], dict[str, route_pb2.RouteConfiguration]]:
    listeners, routes = http_resources(mesh, collect_services(mesh, ()), node)
    return (
        {k: v for k, v in listeners.items() if isinstance(v, listener_pb2.Listener)},
        {k: v for k, v in routes.items() if isinstance(v, route_pb2.RouteConfiguration)},
    )


def routes_of(mesh: MeshConfig, service: str = "attendees:8080") -> list[rc.Route]:
    _, tables = resources(mesh)
    (vhost,) = tables[service].virtual_hosts
    return list(vhost.routes)


def only_route(*rules: HTTPRoute, extensions: VirtualServiceExtensions | None = None) -> rc.Route:
    (route,) = routes_of(config(vs(*rules, extensions=extensions)))
    return route


def manager_of(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    if listener.HasField("api_listener"):
        assert listener.api_listener.api_listener.Unpack(manager)
    else:
        assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager
