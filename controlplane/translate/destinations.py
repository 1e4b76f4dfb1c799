"""Where a VirtualService destination points: its cluster name.

``outbound|PORT|SUBSET|HOST`` (see :mod:`.naming`). The port is the
destination's own, else the port of the service being routed when the
destination host serves it (or is unknown), else the destination host's only
port; a host with several ports and none of them the routed one needs an
explicit port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.traffic_model import Destination
from controlplane.translate import naming
from controlplane.translate.errors import TranslationError
from controlplane.translate.services import MeshService


@dataclass(frozen=True, slots=True)
class PortDirectory:
    """The service ports of every host in the mesh."""

    ports_by_host: Mapping[str, tuple[int, ...]]
    namespace_by_host: Mapping[str, str]

    @classmethod
    def of(cls, services: Iterable[MeshService]) -> PortDirectory:
        ports: dict[str, list[int]] = {}
        namespaces: dict[str, str] = {}
        for service in services:
            ports.setdefault(service.host, []).append(service.number)
            namespaces.setdefault(service.host, service.namespace)
        return cls(
            MappingProxyType({h: tuple(sorted(p)) for h, p in sorted(ports.items())}),
            MappingProxyType(dict(sorted(namespaces.items()))),
        )

    def cluster_for(self, destination: Destination, routed_port: int, where: str) -> str:
        port = self.port_for(destination, routed_port, where)
        return naming.cluster_name(destination.host, port, destination.subset)

    def port_for(self, destination: Destination, routed_port: int, where: str) -> int:
        if destination.port is not None:
            return destination.port
        known = self.ports_by_host.get(destination.host)
        if not known or routed_port in known:
            return routed_port
        if len(known) == 1:
            return known[0]
        raise TranslationError(
            f"{where}.destination: host {destination.host!r} has ports "
            f"{', '.join(map(str, known))}; name one with destination.port"
        )
