"""The control plane's validated view of the mesh: the contract between the
config parser / registry (which build it) and translate (which reads it).

Everything here is immutable; a new config or registry change produces new
objects, so translate can be a pure function of (MeshConfig, workloads, node).
Field names and meanings follow Istio's ServiceEntry / WorkloadEntry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.security_model import (
        AuthorizationPolicy,
        PeerAuthentication,
        RequestAuthentication,
        ServiceIntentions,
    )
    from controlplane.traffic_model import DestinationRule, VirtualService

EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty_str_map() -> Mapping[str, str]:
    # A factory, not `= EMPTY`: Python 3.11+ dataclasses reject an unhashable default.
    return EMPTY


def _empty_int_map() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, order=True)
class Locality:
    """Where a workload runs, as xDS's ``Locality`` says it: region, zone and
    sub_zone, each optional ("" = not given; a zone without a region is valid)."""

    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    @classmethod
    def from_path(cls, path: str) -> Locality:
        """Istio's ``region/zone/subzone`` string (trailing parts optional)."""
        region, zone, sub_zone = [*path.split("/", 2), "", ""][:3]
        return cls(region, zone, sub_zone)

    @property
    def path(self) -> str:
        """``region/zone/subzone`` by position, trailing empty parts left out (``/z1`` is a
        zone without a region): how translate carries it; :meth:`from_path` reverses it
        for parts without a ``/``."""
        return "/".join((self.region, self.zone, self.sub_zone)).rstrip("/")

    def as_dict(self) -> dict[str, str]:
        """The JSON shape, with xDS's field names."""
        return {"region": self.region, "zone": self.zone, "sub_zone": self.sub_zone}


NO_LOCALITY = Locality()


@dataclass(frozen=True, slots=True)
class Source:
    """Where a resource came from: for error messages and the status view."""

    file: str
    document: int  # 1-based index of the YAML document in the file

    def __str__(self) -> str:
        return f"{self.file}#{self.document}"


class Resolution(enum.Enum):
    STATIC = "STATIC"
    DNS = "DNS"


class Location(enum.Enum):
    MESH_INTERNAL = "MESH_INTERNAL"
    MESH_EXTERNAL = "MESH_EXTERNAL"


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    name: str
    protocol: str  # upper case: HTTP, HTTP2, GRPC, TCP, ...
    target_port: int | None = None


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """The body of a WorkloadEntry (also an inline ServiceEntry endpoint)."""

    address: str
    ports: Mapping[str, int] = field(default_factory=_empty_int_map)  # port name -> target port
    labels: Mapping[str, str] = field(default_factory=_empty_str_map)
    locality: str = ""  # "region/zone/subzone"
    weight: int = 1
    service_account: str = ""


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    name: str
    namespace: str
    hosts: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    resolution: Resolution
    location: Location = Location.MESH_INTERNAL
    endpoints: tuple[WorkloadSpec, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    source: Source | None = None
    # The operator's mesh-wide "degraded" switch (annotation meshlib.dev/degraded):
    # every caller's @meshlib.fallback for this service fires at once.
    degraded: bool = False


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    name: str
    namespace: str
    spec: WorkloadSpec
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """All declarative config, validated as a whole. Empty is valid."""

    service_entries: tuple[ServiceEntry, ...] = ()
    workload_entries: tuple[WorkloadEntry, ...] = ()
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    peer_authentications: tuple[PeerAuthentication, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    service_intentions: tuple[ServiceIntentions, ...] = ()
    request_authentications: tuple[RequestAuthentication, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredWorkload:
    """A workload that announced itself at run time (admin API or gRPC).

    ``ports`` maps the service port (what callers dial, ``HOST:PORT``) to the
    port the workload listens on. A registration for a host that no
    ServiceEntry declares creates an implicit service with those ports.
    ``identity`` is the workload's SPIFFE ID (``spiffe://TD/ns/NS/sa/SA``) when it
    registered on the secure xDS address with a proven identity, else None.
    """

    id: str
    service: str  # the service host, e.g. "sessions"
    address: str
    ports: Mapping[int, int]  # service port -> target port
    labels: Mapping[str, str] = field(default_factory=_empty_str_map)
    locality: Locality = NO_LOCALITY
    weight: int = 1
    ttl_s: float = 30.0
    namespace: str = "default"
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What translate needs to know about the xDS client asking."""

    id: str
    cluster: str = ""
    locality: str = ""  # "region/zone/subzone"
    metadata: Mapping[str, object] = field(default_factory=dict)

    @property
    def is_sidecar(self) -> bool:
        return self.metadata.get("mesh.proxy") == "sidecar"
