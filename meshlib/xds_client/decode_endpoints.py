"""ClusterLoadAssignment (EDS) -> EndpointsResource, validated as gRPC does.

gRFC A27: a locality needs an ID; a locality with weight 0 (or unset) is
ignored; priorities must run 0..N without gaps; an endpoint needs a socket
address with a port; an endpoint weight, when set, must be above 0; a locality
appears once per priority and an address once per resource. Drop overloads
are kept (per million); the overprovisioning factor must be above 0. Endpoint
labels come from the ``envoy.lb`` filter metadata (as Envoy's subset LB reads);
an endpoint's SPIFFE ID from ``meshlib.identity`` (what mTLS expects it to present).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshlib.errors import IdentityError
from meshlib.security.identity import SpiffeId
from meshlib.xds_client._decode_util import DecodeContext, per_million
from meshlib.xds_client.frozen_map import EMPTY, FrozenMap
from meshlib.xds_client.resources import (
    DropOverload,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    Locality,
    LocalityEndpoints,
)

_MAX_WEIGHT_SUM = 2**32 - 1
_LB_METADATA = "envoy.lb"  # the filter_metadata key Envoy's subset LB reads
_MESH_METADATA, _IDENTITY_KEY = "meshlib", "identity"  # the endpoint's SPIFFE ID


def decode_cluster_load_assignment(msg: Any) -> EndpointsResource:
    """Validate one ``envoy.config.endpoint.v3.ClusterLoadAssignment``."""
    ctx = DecodeContext("ClusterLoadAssignment", msg.cluster_name)
    if not msg.cluster_name:
        raise ctx.error("cluster_name: required")
    localities: list[LocalityEndpoints] = []
    seen: set[tuple[int, Locality]] = set()
    addresses: set[str] = set()
    weight_sums: dict[int, int] = {}
    for i, group in enumerate(msg.endpoints):
        where = f"endpoints[{i}]"
        if not group.HasField("locality"):
            raise ctx.error(f"{where}.locality: required")
        if group.load_balancing_weight.value == 0:
            continue  # as gRPC: a locality without weight takes no traffic
        loc = group.locality
        locality = Locality(region=loc.region, zone=loc.zone, sub_zone=loc.sub_zone)
        if (group.priority, locality) in seen:
            raise ctx.error(
                f"{where}.locality: {locality} appears twice at priority {group.priority}"
            )
        seen.add((group.priority, locality))
        weight_sums[group.priority] = (
            weight_sums.get(group.priority, 0) + group.load_balancing_weight.value
        )
        if weight_sums[group.priority] > _MAX_WEIGHT_SUM:
            raise ctx.error(
                f"{where}.load_balancing_weight: locality weights at priority {group.priority} "
                f"sum to more than {_MAX_WEIGHT_SUM}"
            )
        localities.append(
            LocalityEndpoints(
                locality=locality,
                weight=group.load_balancing_weight.value,
                priority=group.priority,
                endpoints=_endpoints(ctx, group.lb_endpoints, where, addresses),
            )
        )
    _check_priorities(ctx, localities)
    policy = msg.policy
    drops = tuple(
        _drop_overload(ctx, d, f"policy.drop_overloads[{i}]")
        for i, d in enumerate(policy.drop_overloads)
    )
    factor = 140
    if policy.HasField("overprovisioning_factor"):
        factor = policy.overprovisioning_factor.value
        if factor == 0:
            raise ctx.error("policy.overprovisioning_factor: must be greater than 0")
    return EndpointsResource(
        cluster_name=msg.cluster_name,
        localities=tuple(localities),
        drop_overloads=drops,
        overprovisioning_factor=factor,
    )


def socket_address(ctx: DecodeContext, address: Any, where: str) -> tuple[str, int]:
    """The (host, port) of an ``envoy.config.core.v3.Address``; a port number is required."""
    if address.WhichOneof("address") != "socket_address":
        raise ctx.error(f"{where}: socket_address required")
    sock = address.socket_address
    if not sock.address:
        raise ctx.error(f"{where}.socket_address.address: required")
    if sock.WhichOneof("port_specifier") != "port_value":
        raise ctx.error(f"{where}.socket_address.port_value: required")
    if not 0 < sock.port_value < 65536:
        raise ctx.error(f"{where}.socket_address.port_value: {sock.port_value} is out of range")
    return sock.address, sock.port_value


def _endpoints(
    ctx: DecodeContext, lb_endpoints: Any, where: str, addresses: set[str]
) -> tuple[Endpoint, ...]:
    """The endpoints of one locality; ``addresses`` (all seen so far) catches duplicates."""
    out: list[Endpoint] = []
    total = 0
    for j, lb_endpoint in enumerate(lb_endpoints):
        at = f"{where}.lb_endpoints[{j}]"
        if lb_endpoint.WhichOneof("host_identifier") != "endpoint":
            raise ctx.error(f"{at}.endpoint: required")
        weight = 1
        if lb_endpoint.HasField("load_balancing_weight"):
            weight = lb_endpoint.load_balancing_weight.value
            if weight == 0:
                raise ctx.error(f"{at}.load_balancing_weight: must be greater than 0")
        total += weight
        if total > _MAX_WEIGHT_SUM:
            raise ctx.error(f"{where}: endpoint weights sum to more than {_MAX_WEIGHT_SUM}")
        endpoint = lb_endpoint.endpoint
        host, port = socket_address(ctx, endpoint.address, f"{at}.endpoint.address")
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if authority in addresses:
            raise ctx.error(f"{at}.endpoint.address: duplicate endpoint address {authority}")
        addresses.add(authority)
        try:
            health = HealthStatus(lb_endpoint.health_status)
        except ValueError as exc:
            raise ctx.error(
                f"{at}.health_status: unknown value {lb_endpoint.health_status}"
            ) from exc
        out.append(
            Endpoint(
                address=host,
                port=port,
                health=health,
                weight=weight,
                hostname=endpoint.hostname,
                labels=_labels(ctx, lb_endpoint.metadata, f"{at}.metadata"),
                identity=_identity(ctx, lb_endpoint.metadata, f"{at}.metadata"),
            )
        )
    return tuple(out)


def _check_priorities(ctx: DecodeContext, localities: list[LocalityEndpoints]) -> None:
    present = sorted({loc.priority for loc in localities})
    if present and present != list(range(len(present))):
        missing = next(p for p in range(present[-1] + 1) if p not in present)
        raise ctx.error(
            f"endpoints: priority {missing} is missing (priorities present: "
            f"{', '.join(map(str, present))}; they must run from 0 without gaps)"
        )


def _drop_overload(ctx: DecodeContext, drop: Any, where: str) -> DropOverload:
    if not drop.category:
        raise ctx.error(f"{where}.category: required")
    return DropOverload(
        category=drop.category,
        per_million=per_million(ctx, drop.drop_percentage, f"{where}.drop_percentage"),
    )


def _identity(ctx: DecodeContext, metadata: Any, where: str) -> str:
    """filter_metadata["meshlib"]["identity"]: the SPIFFE ID the endpoint presents."""
    fields = (
        metadata.filter_metadata[_MESH_METADATA].fields
        if _MESH_METADATA in metadata.filter_metadata
        else {}
    )
    if _IDENTITY_KEY not in fields:
        return ""
    at = f'{where}.filter_metadata["{_MESH_METADATA}"].{_IDENTITY_KEY}'
    value = fields[_IDENTITY_KEY]
    if value.WhichOneof("kind") != "string_value":
        raise ctx.error(f"{at}: must be a string (a SPIFFE ID)")
    try:
        return str(SpiffeId.parse(value.string_value))
    except IdentityError as exc:
        raise ctx.error(f"{at}: {exc}") from exc


def _labels(ctx: DecodeContext, metadata: Any, where: str) -> Mapping[str, str]:
    """filter_metadata["envoy.lb"] as strings (bools as true/false, whole numbers as ints)."""
    if _LB_METADATA not in metadata.filter_metadata:
        return EMPTY
    out: dict[str, str] = {}
    for key, value in sorted(metadata.filter_metadata[_LB_METADATA].fields.items()):
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            out[key] = value.string_value
        elif kind == "bool_value":
            out[key] = "true" if value.bool_value else "false"
        elif kind == "number_value":
            number = value.number_value
            out[key] = str(int(number)) if number.is_integer() else repr(number)
        else:
            raise ctx.error(
                f'{where}.filter_metadata["{_LB_METADATA}"].{key}: must be a string, bool or number'
            )
    return FrozenMap(out)
