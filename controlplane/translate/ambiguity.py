"""Route destinations whose port translate had to guess.

A destination without ``port`` whose host has several ports, none of them the
routed one, goes to the routed port (Istio's choice, see :mod:`.destinations`),
a cluster the host does not have. The parser refuses this for ServiceEntry
hosts; for hosts whose ports come from run-time registrations, this lists the
cases so the control plane can refuse the registration that would cause one.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.model import MeshConfig, RegisteredWorkload
from controlplane.translate.destinations import PortDirectory
from controlplane.translate.errors import TranslationError
from controlplane.translate.reuse import shared_work
from controlplane.translate.virtual_services import (
    rules_for_port,
    virtual_service_for,
    virtual_service_origin,
)


class AmbiguousDestinationError(TranslationError):
    """A change would leave a route destination's port to a guess (see the module doc)."""


def ambiguous_destinations(
    config: MeshConfig, workloads: Sequence[RegisteredWorkload]
) -> tuple[str, ...]:
    """One message per ambiguous destination, naming the VirtualService and field."""
    services = shared_work(config, workloads).services  # the check just translated them
    ports = PortDirectory.of(services)
    problems: set[str] = set()
    for service in services:
        vs = virtual_service_for(config.virtual_services, service.host)
        if vs is None:
            continue
        origin = virtual_service_origin(vs)
        for port_rule in rules_for_port(vs, service.number, None):
            rule, where = port_rule.rule, f"{origin}: http[{port_rule.index}]"
            fields = [
                *((f"route[{i}].destination", d.destination) for i, d in enumerate(rule.route)),
                *((f"mirrors[{i}].destination", m.destination) for i, m in enumerate(rule.mirrors)),
            ]
            for field, destination in fields:
                problem = ports.ambiguity(destination, service.number)
                if problem is not None:
                    problems.add(f"{where}.{field}: {problem}")
    return tuple(sorted(problems))
