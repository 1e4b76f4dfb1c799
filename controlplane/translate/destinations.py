"""Where a VirtualService destination points: its cluster name.

``outbound|PORT|SUBSET|HOST`` (see :mod:`.naming`). The port is Istio's
choice (``GetDestinationCluster``): the destination's own, else the
destination host's only port, else the port of the service being routed.

The last case never fails, so run-time registrations cannot break translation
for everyone; but when the host has several ports and none is the routed one,
the route points at a cluster that does not exist. The config parser refuses
that for ServiceEntry hosts; :func:`ambiguous_destinations` finds it for hosts
whose ports come from registrations, so a registration that would cause it is
refused at the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.traffic_model import Destination
from controlplane.translate import naming
from controlplane.translate.services import MeshService


@dataclass(frozen=True, slots=True)
class PortDirectory:
    """The service ports of every host in the mesh."""

    ports_by_host: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, services: Iterable[MeshService]) -> PortDirectory:
        ports: dict[str, list[int]] = {}
        for service in services:
            ports.setdefault(service.host, []).append(service.number)
        return cls(MappingProxyType({h: tuple(sorted(p)) for h, p in sorted(ports.items())}))

    def cluster_for(self, destination: Destination, routed_port: int) -> str:
        port = self.port_for(destination, routed_port)
        return naming.cluster_name(destination.host, port, destination.subset)

    def port_for(self, destination: Destination, routed_port: int) -> int:
        if destination.port is not None:
            return destination.port
        known = self.ports_by_host.get(destination.host, ())
        if len(known) == 1:
            return known[0]
        return routed_port

    def ambiguity(self, destination: Destination, routed_port: int) -> str | None:
        """Why the destination's port is a guess (see the module doc), or None."""
        known = self.ports_by_host.get(destination.host, ())
        if destination.port is not None or len(known) < 2 or routed_port in known:
            return None
        return (
            f"host {destination.host!r} has ports {', '.join(map(str, known))} and none is "
            f"the routed port {routed_port}; name one with destination.port"
        )
