"""Small constructors for xDS resource models used across the data-path tests."""

from __future__ import annotations

from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    ListenerResource,
    Locality,
    LocalityEndpoints,
    PathMatchKind,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)


def prefix_route(prefix: str, cluster: str, name: str = "") -> Route:
    return Route(
        name or f"{prefix}->{cluster}",
        RouteMatch(PathMatchKind.PREFIX, prefix),
        RouteAction(cluster=cluster),
    )


def route_config(name: str, domains: tuple[str, ...], *routes: Route) -> RouteConfigResource:
    return RouteConfigResource(name, (VirtualHost(f"{name}-vh", domains, tuple(routes)),))


def listener(name: str, rds: str) -> ListenerResource:
    return ListenerResource(name=name, route_config_name=rds, route_config=None)


def eds_cluster(name: str) -> ClusterResource:
    return ClusterResource(name=name, type=ClusterType.EDS, eds_service_name=name)


def endpoints(
    cluster: str,
    addresses: list[tuple[str, int]],
    *,
    priority: int = 0,
    zone: str = "z1",
    weight: int = 1,
    health: HealthStatus = HealthStatus.HEALTHY,
) -> EndpointsResource:
    return EndpointsResource(
        cluster,
        (
            LocalityEndpoints(
                Locality("r", zone),
                weight,
                priority,
                tuple(Endpoint(a, p, health) for a, p in addresses),
            ),
        ),
    )
