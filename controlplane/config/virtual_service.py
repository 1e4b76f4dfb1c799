"""VirtualService: how requests for a host are routed, for the mesh's callers.

``hosts`` are service names as ServiceEntry hosts (wildcards not supported yet);
``gateways`` may only be ``["mesh"]`` (the default); ``http`` rules are kept in
order, the first match wins. ``tls`` / ``tcp`` routes and ``exportTo`` are
refused as "not supported yet". ``meshlib.dev/`` annotations add hedging, a local
rate limit and Envoy's fault headers.
"""

from __future__ import annotations

from controlplane.config import names
from controlplane.config.annotations import virtual_service_extensions
from controlplane.config.fields import Fields, as_string
from controlplane.config.http_route import parse_http_route
from controlplane.config.resource import Header
from controlplane.traffic_model import HTTPRoute, VirtualService

SPEC_FIELDS = ("hosts", "gateways", "http")
SPEC_NOT_YET = ("tls", "tcp", "exportTo")
MESH_GATEWAY = "mesh"


def parse_virtual_service(header: Header, spec: Fields) -> VirtualService | None:
    """Validate a VirtualService spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "VirtualService spec")
    hosts = _hosts(spec)
    _gateways(spec)
    http = _http(spec)
    extensions = virtual_service_extensions(ctx, header.annotations)
    if ctx.count != before or not hosts:
        return None
    return VirtualService(
        name=header.name,
        namespace=header.namespace,
        hosts=hosts,
        http=http,
        extensions=extensions,
        source=header.source,
    )


def _hosts(spec: Fields) -> tuple[str, ...]:
    hosts: list[str] = []
    for path, value in spec.items("hosts", required=True, non_empty=True) or ():
        host = as_string(spec.ctx, path, value, names.service_host)
        if host is None:
            continue
        if host in hosts:
            spec.ctx.error(path, f"duplicate host {host!r}")
            continue
        hosts.append(host)
    return tuple(hosts)


def _gateways(spec: Fields) -> None:
    """Only the sidecar / proxyless mesh: ``gateways: [mesh]`` or nothing."""
    for path, value in spec.items("gateways") or ():
        gateway = as_string(spec.ctx, path, value)
        if gateway is not None and gateway != MESH_GATEWAY:
            spec.ctx.error(
                path, f'gateway {gateway!r} is not supported yet (only "{MESH_GATEWAY}")'
            )


def _http(spec: Fields) -> tuple[HTTPRoute, ...]:
    routes: list[HTTPRoute] = []
    for path, value in spec.items("http", required=True, non_empty=True) or ():
        fields = Fields.of(spec.ctx, path, value)
        route = parse_http_route(fields) if fields is not None else None
        if route is not None:
            routes.append(route)
    return tuple(routes)
