"""Checks of DestinationRule policies against the routes and services they govern.

What translation would otherwise refuse, found at load time with the field named:

* the destinations one route splits over hash on different consistentHash keys
  (Envoy and gRPC hash once per route, so one route hashes one way);
* a subset of a resolution-DNS host selects none of its endpoints (the subset's
  LOGICAL_DNS cluster needs the one address to resolve).

The policy in force for a destination is computed as translate computes it
(:func:`controlplane.destination_policy.effective_policy`), so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from controlplane.config.cross_checks import issue_at
from controlplane.config.errors import ConfigIssue
from controlplane.destination_policy import effective_policy
from controlplane.model import Resolution, ServiceEntry
from controlplane.traffic_model import (
    ConsistentHash,
    Destination,
    DestinationRule,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
)

HashKey = tuple[object, ...]


def check_route_hash_keys(
    services: Sequence[VirtualService],
    rules: Sequence[DestinationRule],
    entries: Sequence[ServiceEntry],
) -> list[ConfigIssue]:
    """Every route's destinations hash on one key (or do not hash)."""
    rule_of = {rule.host: rule for rule in reversed(rules)}  # the first rule per host wins
    ports_of: dict[str, set[int]] = {}
    for entry in entries:
        for host in entry.hosts:
            ports_of.setdefault(host, set()).update(port.number for port in entry.ports)
    issues: list[ConfigIssue] = []
    for service in services:
        routed = sorted({port for host in service.hosts for port in ports_of.get(host, ())})
        for index, rule in enumerate(service.http):
            problem = _rule_conflict(rule, routed, rule_of, ports_of)
            if problem is not None:
                issues.append(issue_at(service.source, f"spec.http[{index}].route", problem))
    return issues


def _rule_conflict(
    rule: HTTPRoute,
    routed_ports: Sequence[int],
    rule_of: Mapping[str, DestinationRule],
    ports_of: Mapping[str, set[int]],
) -> str | None:
    chosen = _chosen(rule.route)
    if len(chosen) < 2:
        return None
    for routed in _routed_ports(rule, routed_ports):
        keys: dict[HashKey, str] = {}
        for index, destination in chosen:
            port = _port(destination.destination, routed, ports_of)
            hashing = _hashing(destination.destination, port, rule_of)
            if hashing is not None:
                key, origin = hashing
                keys.setdefault(key, f"route[{index}] hashes on {_describe(key)} ({origin})")
        if len(keys) > 1:
            return (
                f"the destinations hash on different consistentHash keys: "
                f"{'; '.join(keys.values())}; one route hashes one way, so give their "
                "DestinationRules the same key"
            )
    return None


def _routed_ports(rule: HTTPRoute, service_ports: Sequence[int]) -> list[int | None]:
    """The ports the rule routes: those its match blocks name, plus the service's
    when a block names none (None: the service's ports are only known at run time)."""
    ports: set[int | None] = {block.port for block in rule.match if block.port is not None}
    if not rule.match or any(block.port is None for block in rule.match):
        ports.update(service_ports or [None])
    return sorted(ports, key=lambda port: -1 if port is None else port)


def _chosen(route: tuple[HTTPRouteDestination, ...]) -> list[tuple[int, HTTPRouteDestination]]:
    """The destinations that get traffic (a zero weight next to others gets none)."""
    indexed = list(enumerate(route))
    if len(indexed) == 1:
        return indexed
    return [(index, dest) for index, dest in indexed if dest.weight > 0]


def _port(
    destination: Destination, routed: int | None, ports_of: Mapping[str, set[int]]
) -> int | None:
    """The destination's port as translate picks it; None when only run time knows."""
    if destination.port is not None:
        return destination.port
    known = ports_of.get(destination.host, set())
    if len(known) == 1:
        return next(iter(known))
    return routed


def _hashing(
    destination: Destination, port: int | None, rule_of: Mapping[str, DestinationRule]
) -> tuple[HashKey, str] | None:
    rule = rule_of.get(destination.host)
    if rule is None or port is None:
        return None
    if destination.subset and all(s.name != destination.subset for s in rule.subsets):
        return None  # reported by check_destinations
    settings = effective_policy(rule, port, destination.subset).load_balancer
    if settings is None or settings.consistent_hash is None:
        return None
    return _key(settings.consistent_hash), f"DestinationRule {rule.namespace}/{rule.name}"


def _key(hashing: ConsistentHash) -> HashKey:
    cookie = hashing.http_cookie
    return (
        hashing.http_header_name,
        None if cookie is None else (cookie.name, cookie.path, cookie.ttl_s),
        hashing.use_source_ip,
        hashing.http_query_parameter_name,
    )


def _describe(key: HashKey) -> str:
    header, cookie, source_ip, query = key
    if header:
        return f"httpHeaderName {header!r}"
    if isinstance(cookie, tuple):
        return f"httpCookie {cookie[0]!r}"
    if source_ip:
        return "useSourceIp"
    return f"httpQueryParameterName {query!r}"


def check_dns_subsets(
    rules: Sequence[DestinationRule], entries: Sequence[ServiceEntry]
) -> list[ConfigIssue]:
    """A subset of a DNS host must select one of the ServiceEntry's endpoints."""
    issues: list[ConfigIssue] = []
    for rule in rules:
        for entry in _dns_entries(entries, rule.host):
            for index, subset in enumerate(rule.subsets):
                labels = subset.labels
                if not labels or any(
                    all(spec.labels.get(k) == v for k, v in labels.items())
                    for spec in entry.endpoints
                ):
                    continue
                issues.append(
                    issue_at(
                        rule.source,
                        f"spec.subsets[{index}].labels",
                        f"subset {subset.name!r} selects no endpoint of ServiceEntry "
                        f"{entry.namespace}/{entry.name} at {entry.source}: with resolution "
                        "DNS a subset's cluster resolves one endpoint, so its labels must "
                        "match one",
                    )
                )
    return issues


def _dns_entries(entries: Sequence[ServiceEntry], host: str) -> Iterator[ServiceEntry]:
    for entry in entries:
        if entry.resolution is Resolution.DNS and host in entry.hosts:
            yield entry
