"""WorkloadEntry: one workload (address, ports by name, labels, locality, weight).

The same body is a ServiceEntry's inline endpoint, so :func:`parse_workload_spec`
serves both; the ServiceEntry passes the port names its endpoints may use and
whether a hostname is allowed as the address (DNS) or only an IP (STATIC).
"""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType

from controlplane.config import names
from controlplane.config.annotations import meshlib_annotations
from controlplane.config.fields import Fields, as_integer
from controlplane.config.resource import Header
from controlplane.model import WorkloadEntry, WorkloadSpec

SPEC_FIELDS = ("address", "ports", "labels", "locality", "weight", "serviceAccount")
SPEC_NOT_YET = ("network",)
MAX_WEIGHT = 2**32 - 1
MAX_PORT = 65535


def parse_workload_spec(
    spec: Fields,
    *,
    allow_hostname: bool = True,
    port_names: Collection[str] | None = None,
    what: str = "WorkloadEntry spec",
) -> WorkloadSpec | None:
    """Validate a WorkloadEntry body; ``port_names`` limits the keys of ``ports``."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, what)
    address = spec.string(
        "address",
        required=True,
        check=lambda value: names.endpoint_address(value, allow_hostname=allow_hostname),
    )
    ports = _ports(spec, port_names)
    labels = spec.string_map(
        "labels", key_check=names.label_key, value_check=names.label_value, allow_empty_values=True
    )
    locality = spec.string("locality", check=names.locality)
    weight = spec.integer("weight", minimum=0, maximum=MAX_WEIGHT)
    service_account = spec.string("serviceAccount", check=names.dns_subdomain)
    if ctx.count != before or address is None:
        return None
    return WorkloadSpec(
        address=address,
        ports=ports if ports is not None else MappingProxyType({}),
        labels=labels if labels is not None else MappingProxyType({}),
        locality=locality or "",
        weight=weight or 1,  # Istio: 0 (unset) means the default weight 1
        service_account=service_account or "",
    )


def _ports(spec: Fields, port_names: Collection[str] | None) -> MappingProxyType[str, int] | None:
    """``ports``: port name -> the port the workload listens on."""
    fields = spec.mapping("ports")
    if fields is None:
        return None
    result: dict[str, int] = {}
    for name, value in fields.data.items():
        path = fields.at(name)
        problem = names.dns_label(name)
        if problem is not None:
            spec.ctx.error(path, f"port name {problem}")
        elif port_names is not None and name not in port_names:
            known = ", ".join(sorted(port_names)) or "none"
            spec.ctx.error(path, f"{name!r} is not a port name of this ServiceEntry ({known})")
        number = as_integer(spec.ctx, path, value, 1, MAX_PORT)
        if number is not None:
            result[name] = number
    return MappingProxyType(result)


def parse_workload_entry(header: Header, spec: Fields) -> WorkloadEntry | None:
    """Build a WorkloadEntry resource from its validated header and spec."""
    meshlib_annotations(spec.ctx, header.annotations, "WorkloadEntry", ())
    body = parse_workload_spec(spec)
    if body is None:
        return None
    return WorkloadEntry(
        name=header.name, namespace=header.namespace, spec=body, source=header.source
    )
