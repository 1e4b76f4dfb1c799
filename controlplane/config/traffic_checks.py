"""Checks of VirtualServices and DestinationRules against the whole config.

One VirtualService and one DestinationRule per host; every destination's subset
is defined by the host's DestinationRule; a destination's port is one its
ServiceEntries declare, and is given when they declare several. A host no
ServiceEntry declares is fine: it may be served by registered workloads only.
Issues are reported at the later resource and name the earlier one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from controlplane.config.cross_checks import issue_at
from controlplane.config.errors import ConfigIssue
from controlplane.model import ServiceEntry
from controlplane.traffic_model import Destination, DestinationRule, HTTPRoute, VirtualService


def check_one_virtual_service_per_host(services: Sequence[VirtualService]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    owners: dict[str, VirtualService] = {}
    for service in services:
        for index, host in enumerate(service.hosts):
            owner = owners.setdefault(host, service)
            if owner is not service:
                issues.append(
                    issue_at(
                        service.source,
                        f"spec.hosts[{index}]",
                        f"host {host!r} is already routed by VirtualService "
                        f"{owner.namespace}/{owner.name} at {owner.source} "
                        "(one VirtualService per host)",
                    )
                )
    return issues


def check_one_destination_rule_per_host(rules: Sequence[DestinationRule]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    owners: dict[str, DestinationRule] = {}
    for rule in rules:
        owner = owners.setdefault(rule.host, rule)
        if owner is not rule:
            issues.append(
                issue_at(
                    rule.source,
                    "spec.host",
                    f"host {rule.host!r} already has DestinationRule "
                    f"{owner.namespace}/{owner.name} at {owner.source} "
                    "(one DestinationRule per host)",
                )
            )
    return issues


def check_destinations(
    services: Sequence[tuple[VirtualService, Mapping[str, object]]],
    rules: Sequence[DestinationRule],
    entries: Sequence[ServiceEntry],
) -> list[ConfigIssue]:
    """Subsets and ports of every route and mirror destination.

    Each VirtualService comes with its spec as written, to tell ``mirror`` from
    ``mirrors[0]`` in the paths of issues.
    """
    rule_of = {rule.host: rule for rule in reversed(rules)}  # the first rule per host wins
    ports_of: dict[str, dict[int, ServiceEntry]] = {}
    for entry in entries:
        for host in entry.hosts:
            for port in entry.ports:
                ports_of.setdefault(host, {}).setdefault(port.number, entry)
    issues: list[ConfigIssue] = []
    for service, spec in services:
        for path, destination in _destinations(service, spec):
            for problem_path, message in _problems(path, destination, rule_of, ports_of):
                issues.append(issue_at(service.source, problem_path, message))
    return issues


def _destinations(
    service: VirtualService, spec: Mapping[str, object]
) -> Iterator[tuple[str, Destination]]:
    raw_rules = spec.get("http")
    for index, rule in enumerate(service.http):
        raw = raw_rules[index] if isinstance(raw_rules, list) else {}
        yield from _rule_destinations(f"spec.http[{index}]", rule, raw)


def _rule_destinations(
    path: str, rule: HTTPRoute, raw: object
) -> Iterator[tuple[str, Destination]]:
    for index, route in enumerate(rule.route):
        yield f"{path}.route[{index}].destination", route.destination
    single_mirror = isinstance(raw, dict) and "mirror" in raw
    for index, mirror in enumerate(rule.mirrors):
        where = f"{path}.mirror" if single_mirror else f"{path}.mirrors[{index}].destination"
        yield where, mirror.destination


def _problems(
    path: str,
    destination: Destination,
    rule_of: Mapping[str, DestinationRule],
    ports_of: Mapping[str, Mapping[int, ServiceEntry]],
) -> Iterator[tuple[str, str]]:
    host = destination.host
    if destination.subset:
        rule = rule_of.get(host)
        if rule is None:
            yield (
                f"{path}.subset",
                f"subset {destination.subset!r} is not defined: "
                f"no DestinationRule for host {host!r}",
            )
        elif all(subset.name != destination.subset for subset in rule.subsets):
            defined = ", ".join(subset.name for subset in rule.subsets) or "none"
            yield (
                f"{path}.subset",
                f"subset {destination.subset!r} is not defined by DestinationRule "
                f"{rule.namespace}/{rule.name} at {rule.source} (subsets: {defined})",
            )
    ports = ports_of.get(host)
    if not ports:
        return
    declared = ", ".join(str(number) for number in sorted(ports))
    if destination.port is None and len(ports) > 1:
        yield (
            f"{path}.port",
            f"is required: host {host!r} has several ports ({declared})",
        )
    elif destination.port is not None and destination.port not in ports:
        yield (
            f"{path}.port.number",
            f"port {destination.port} is not declared for host {host!r} "
            f"(ServiceEntry ports: {declared})",
        )
