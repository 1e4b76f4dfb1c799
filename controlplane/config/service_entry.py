"""ServiceEntry: a service's hosts and ports, and where its endpoints come from.

Follows Istio's reference semantics for the subset meshlib serves today:
resolution STATIC (inline IP endpoints, or WorkloadEntries by ``workloadSelector``)
and DNS (one hostname endpoint, or the host itself); HTTP, HTTP2 and GRPC ports.
Everything else Istio knows is refused as "not supported yet", never ignored.
"""

from __future__ import annotations

from types import MappingProxyType

from controlplane.config import names
from controlplane.config.annotations import service_entry_degraded
from controlplane.config.fields import Fields, as_string
from controlplane.config.resource import Header
from controlplane.config.workload_entry import MAX_PORT, parse_workload_spec
from controlplane.model import Location, Resolution, ServiceEntry, ServicePort, WorkloadSpec

SPEC_FIELDS = ("hosts", "ports", "resolution", "location", "endpoints", "workloadSelector")
SPEC_NOT_YET = ("addresses", "exportTo", "subjectAltNames")
PORT_FIELDS = ("number", "name", "protocol", "targetPort")
PROTOCOLS = ("HTTP", "HTTP2", "GRPC")
PROTOCOLS_NOT_YET = frozenset(
    {"HTTPS", "TCP", "TLS", "UDP", "MONGO", "REDIS", "MYSQL", "GRPC-WEB", "HTTP_PROXY"}
)
RESOLUTIONS = tuple(r.value for r in Resolution)
RESOLUTIONS_NOT_YET = ("NONE", "DNS_ROUND_ROBIN")
LOCATIONS = tuple(loc.value for loc in Location)


def parse_service_entry(header: Header, spec: Fields) -> ServiceEntry | None:
    """Validate a ServiceEntry spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "ServiceEntry spec")
    hosts = _hosts(spec)
    ports = _ports(spec)
    resolution = _resolution(spec, hosts)
    location = spec.choice("location", supported=LOCATIONS, what="location")
    selector = _workload_selector(spec)
    if spec.present("endpoints") and spec.present("workloadSelector"):
        ctx.error(
            spec.at("workloadSelector"), "only one of endpoints and workloadSelector may be set"
        )
    port_names = _declared_port_names(spec)
    endpoints = _endpoints(spec, resolution, port_names)
    degraded = service_entry_degraded(ctx, header.annotations)
    if ctx.count != before or hosts is None or ports is None or resolution is None:
        return None
    return ServiceEntry(
        name=header.name,
        namespace=header.namespace,
        hosts=hosts,
        ports=ports,
        resolution=resolution,
        location=Location(location) if location else Location.MESH_INTERNAL,
        endpoints=endpoints or (),
        workload_selector=selector,
        source=header.source,
        degraded=degraded,
    )


def _hosts(spec: Fields) -> tuple[str, ...] | None:
    elements = spec.items("hosts", required=True, non_empty=True)
    if elements is None:
        return None
    hosts: list[str] = []
    for path, value in elements:
        host = as_string(spec.ctx, path, value, names.service_host)
        if host is None:
            continue
        if host in hosts:
            spec.ctx.error(path, f"duplicate host {host!r}")
            continue
        hosts.append(host)
    return tuple(hosts)


def _ports(spec: Fields) -> tuple[ServicePort, ...] | None:
    elements = spec.items("ports", required=True, non_empty=True)
    if elements is None:
        return None
    ports: list[ServicePort] = []
    for path, value in elements:
        fields = Fields.of(spec.ctx, path, value)
        if fields is None:
            continue
        port = _port(fields)
        if port is None:
            continue
        if any(other.name == port.name for other in ports):
            spec.ctx.error(fields.at("name"), f"duplicate port name {port.name!r}")
        elif any(other.number == port.number for other in ports):
            spec.ctx.error(fields.at("number"), f"duplicate port number {port.number}")
        else:
            ports.append(port)
    return tuple(ports)


def _port(fields: Fields) -> ServicePort | None:
    before = fields.ctx.count
    fields.reject_unknown(PORT_FIELDS, what="a port")
    number = fields.integer("number", minimum=1, maximum=MAX_PORT, required=True)
    name = fields.string("name", required=True, check=names.dns_label)
    protocol = _protocol(fields)
    target_port = fields.integer("targetPort", minimum=1, maximum=MAX_PORT)
    if fields.ctx.count != before or number is None or name is None or protocol is None:
        return None
    return ServicePort(number=number, name=name, protocol=protocol, target_port=target_port)


def _protocol(fields: Fields) -> str | None:
    """Istio parses protocols case-insensitively; the model stores them upper case."""
    text = fields.string("protocol", required=True)
    if text is None:
        return None
    protocol = text.upper()
    if protocol in PROTOCOLS:
        return protocol
    supported = ", ".join(PROTOCOLS)
    if protocol in PROTOCOLS_NOT_YET:
        fields.ctx.error(
            fields.at("protocol"), f"protocol {text} is not supported yet (use {supported})"
        )
    else:
        fields.ctx.error(fields.at("protocol"), f"unknown protocol {text!r} (use {supported})")
    return None


def _resolution(spec: Fields, hosts: tuple[str, ...] | None) -> Resolution | None:
    """STATIC or DNS; when omitted, STATIC if endpoints or a selector say where to go."""
    value = spec.choice(
        "resolution", supported=RESOLUTIONS, not_yet=RESOLUTIONS_NOT_YET, what="resolution"
    )
    has_endpoints = spec.present("endpoints")
    has_selector = spec.present("workloadSelector")
    if value is None:
        if spec.present("resolution"):
            return None  # already reported
        if not (has_endpoints or has_selector):
            spec.ctx.error(
                spec.at("resolution"),
                "is required without endpoints or workloadSelector "
                "(Istio's default NONE is not supported yet; use STATIC or DNS)",
            )
            return None
        return Resolution.STATIC
    resolution = Resolution(value)
    if resolution is Resolution.DNS:
        _check_dns(spec, hosts)
    return resolution


def _check_dns(spec: Fields, hosts: tuple[str, ...] | None) -> None:
    """DNS maps to one logical-DNS cluster: one address to resolve, no selector."""
    if spec.present("workloadSelector"):
        spec.ctx.error(
            spec.at("workloadSelector"), "workloadSelector with resolution DNS is not supported yet"
        )
    endpoints = spec.data.get("endpoints")
    if isinstance(endpoints, list) and len(endpoints) > 1:
        spec.ctx.error(
            spec.at("endpoints"),
            f"resolution DNS with {len(endpoints)} endpoints is not supported yet (use one)",
        )
    elif not endpoints and hosts is not None and len(hosts) > 1:
        spec.ctx.error(
            spec.at("hosts"),
            "resolution DNS without endpoints resolves the host itself; "
            f"{len(hosts)} hosts are not supported yet (use one)",
        )


def _workload_selector(spec: Fields) -> MappingProxyType[str, str] | None:
    fields = spec.mapping("workloadSelector")
    if fields is None:
        return None
    fields.reject_unknown(("labels",), what="workloadSelector")
    labels = fields.string_map(
        "labels", key_check=names.label_key, value_check=names.label_value, allow_empty_values=True
    )
    if labels is None:
        if not fields.present("labels"):
            spec.ctx.error(fields.at("labels"), "is required")
        return None
    if not labels:
        spec.ctx.error(fields.at("labels"), "must not be empty (it would select every workload)")
        return None
    return MappingProxyType(dict(labels))


def _declared_port_names(spec: Fields) -> set[str]:
    """Port names as written, valid or not, so a bad port is reported once, not per endpoint."""
    ports = spec.data.get("ports")
    if not isinstance(ports, list):
        return set()
    return {p["name"] for p in ports if isinstance(p, dict) and isinstance(p.get("name"), str)}


def _endpoints(
    spec: Fields, resolution: Resolution | None, port_names: set[str]
) -> tuple[WorkloadSpec, ...] | None:
    elements = spec.items("endpoints")
    if elements is None:
        return None
    endpoints: list[WorkloadSpec] = []
    for path, value in elements:
        fields = Fields.of(spec.ctx, path, value)
        if fields is None:
            continue
        endpoint = parse_workload_spec(
            fields,
            allow_hostname=resolution is not Resolution.STATIC,
            port_names=port_names,
            what="an endpoint",
        )
        if endpoint is not None:
            endpoints.append(endpoint)
    return tuple(endpoints)
