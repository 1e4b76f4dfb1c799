"""Bring a translation up to date after a config change, building only what it touches.

What each resource is built from (and so what a change rebuilds):

* a service's routing (its proxyless listener and route table, its virtual host in
  a sidecar's ``mesh_outbound``) reads the service, the VirtualService of its host,
  and the ports and DestinationRule of every host that VirtualService routes or
  mirrors to (and of its own host, for the default route's hash policy);
* a service's clusters and load assignments read the service (its endpoints come
  from ServiceEntries, WorkloadEntries and registrations: the catalog is compared
  service by service) and the DestinationRule of its host;
* a proxyless inbound listener reads the workload it serves (from the catalog)
  and the security policies; a sidecar's inbound listener is built again always;
* the security policies are read by inbound listeners and (PeerAuthentication,
  for auto mTLS) by clusters, by nothing else: a change rebuilds the inbound
  listeners of the workloads it applies to, and for a PeerAuthentication the TLS of
  the clusters with endpoints it applies to (:mod:`.security_changes`).

A change that brings a namespace the mesh did not have is not bounded here: the
caller translates whole. So does any TranslationError (the whole translation then
says which error comes first, as without this module). The result equals
:func:`controlplane.translate.translate` of the new inputs (tests hold the two equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from controlplane.destination_policy import destination_rule_for
from controlplane.model import MeshConfig, NodeInfo, Resolution
from controlplane.traffic_model import Destination, DestinationRule, VirtualService
from controlplane.translate import Resources, naming
from controlplane.translate.clusters import build_cluster
from controlplane.translate.destinations import PortDirectory
from controlplane.translate.endpoints import build_load_assignment
from controlplane.translate.errors import TranslationError
from controlplane.translate.http_resources import http_resources
from controlplane.translate.listeners import build_listener
from controlplane.translate.routes import (
    ServiceRouting,
    build_route_configuration,
    service_routing,
)
from controlplane.translate.security_changes import SecurityScope, security_scope
from controlplane.translate.security_inbound import (
    has_sidecar_inbound,
    inbound_listener_name,
    proxyless_inbound_listener,
    server_workloads,
    sidecar_inbound,
)
from controlplane.translate.security_settings import PolicySettings
from controlplane.translate.security_tls import CertSource
from controlplane.translate.security_upstream import secured_cluster
from controlplane.translate.services import MeshService
from controlplane.translate.source_match import Caller
from controlplane.translate.subsets import service_clusters
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Translated:
    """One translation and what it was made of: what the next one starts from."""

    config: MeshConfig
    services: tuple[MeshService, ...]
    routings: tuple[ServiceRouting, ...]  # for the node translated, services' order
    resources: Resources


def retranslate_config(
    last: Translated,
    config: MeshConfig,
    services: tuple[MeshService, ...],
    node: NodeInfo,
    policy: PolicySettings,
) -> Translated | None:
    """``last`` (translated for ``node``) brought up to ``config`` and the catalog
    ``services`` (collected from it); None when the change is not bounded (translate
    whole then)."""
    if not _namespaces(config, services) <= _namespaces(last.config, last.services):
        return None
    try:
        return _retranslate(last, config, services, node, policy)
    except TranslationError:
        return None  # the whole translation names the error it meets first


def _namespaces(config: MeshConfig, services: Sequence[MeshService]) -> set[str]:
    """Every namespace the catalog and the config name."""
    found = {s.namespace for s in services}
    found.update(e.namespace for s in services for e in s.endpoints if e.namespace)
    found.update(r.namespace for r in config.service_entries)
    found.update(r.namespace for r in config.workload_entries)
    found.update(r.namespace for r in config.virtual_services)
    found.update(r.namespace for r in config.destination_rules)
    return found


def _retranslate(
    last: Translated,
    config: MeshConfig,
    services: tuple[MeshService, ...],
    node: NodeInfo,
    policy: PolicySettings,
) -> Translated:
    old = {(s.host, s.number): s for s in last.services}
    new = {(s.host, s.number): s for s in services}
    moved = {key[0] for key in old.keys() ^ new.keys()}
    moved.update(k[0] for k, s in new.items() if k in old and old[k] is not s and old[k] != s)
    rules = _changed(_rules_by_host(last.config), _rules_by_host(config))
    routed = _changed(_routes_by_host(last.config), _routes_by_host(config))
    routings = _routings(last, config, services, node, moved | rules | routed, moved | rules)
    scope = security_scope(last.config, config, policy)
    listeners = dict(last.resources[LISTENER_TYPE_URL])
    route_configs = dict(last.resources[ROUTE_CONFIG_TYPE_URL])
    clusters = dict(last.resources[CLUSTER_TYPE_URL])
    assignments = dict(last.resources[ENDPOINTS_TYPE_URL])
    if node.is_sidecar:
        if len(routings) != len(last.routings) or any(
            a is not b for a, b in zip(routings, last.routings, strict=True)
        ):
            sidecar_listeners, sidecar_routes = http_resources(config, services, node, routings)
            listeners.update(sidecar_listeners)
            route_configs.update(sidecar_routes)
    else:
        _proxyless_http(last.routings, routings, listeners, route_configs)
    _clusters(
        last,
        config,
        services,
        node,
        policy,
        moved | rules,
        clusters,
        assignments,
        secured={s.host for s in services if scope.touches_clusters(s)},  # auto mTLS
    )
    if has_sidecar_inbound(node):
        inbound, app_cluster = sidecar_inbound(config, services, node, policy)
        listeners[inbound.name] = inbound
        clusters[app_cluster.name] = app_cluster
    elif not node.is_sidecar and (moved or scope.inbound):  # servers: the catalog's endpoints
        _proxyless_inbound(last.services, services, config, policy, listeners, scope)
    resources: Resources = {
        LISTENER_TYPE_URL: listeners,
        ROUTE_CONFIG_TYPE_URL: route_configs,
        CLUSTER_TYPE_URL: clusters,
        ENDPOINTS_TYPE_URL: assignments,
    }
    return Translated(config, services, routings, resources)


def _changed(before: Mapping[str, object], after: Mapping[str, object]) -> set[str]:
    """The hosts whose resource differs (added, removed or edited)."""
    return {
        host
        for host in before.keys() | after.keys()
        if before.get(host) is not after.get(host) and before.get(host) != after.get(host)
    }


def _rules_by_host(config: MeshConfig) -> dict[str, DestinationRule]:
    found: dict[str, DestinationRule] = {}
    for rule in config.destination_rules:
        found.setdefault(rule.host, rule)  # destination_rule_for: the first one
    return found


def _routes_by_host(config: MeshConfig) -> dict[str, VirtualService]:
    found: dict[str, VirtualService] = {}
    for vs in config.virtual_services:
        for host in vs.hosts:
            found.setdefault(host, vs)  # virtual_service_for: the first one
    return found


def _routings(
    last: Translated,
    config: MeshConfig,
    services: tuple[MeshService, ...],
    node: NodeInfo,
    own: set[str],
    destinations: set[str],
) -> tuple[ServiceRouting, ...]:
    """Every service's routing for ``node``: planned again for the services whose host
    is in ``own`` or whose VirtualService routes to a host in ``destinations``."""
    before = {(r.service.host, r.service.number): r for r in last.routings}
    by_host = _routes_by_host(config)
    ports = PortDirectory.of(services)
    rules = tuple(config.destination_rules)
    caller = Caller.of(node)
    routings: list[ServiceRouting] = []
    for service in services:
        vs = by_host.get(service.host)
        kept = before.get((service.host, service.number))
        if (
            kept is None
            or service.host in own
            or (destinations and vs is not None and not destinations.isdisjoint(_hosts_of(vs)))
        ):
            kept = service_routing(service, vs, ports, rules, caller)
        routings.append(kept)
    return tuple(routings)


def _hosts_of(vs: VirtualService) -> frozenset[str]:
    """Every host a VirtualService names as a destination (routes, mirrors, ...),
    remembered by identity (the loader keeps an unchanged document's resources)."""
    known = _destination_hosts.get(id(vs))
    if known is not None and known[0] is vs:
        return known[1]
    if len(_destination_hosts) >= _KEPT_HOSTS:
        _destination_hosts.clear()
    hosts = frozenset(d.host for d in _destinations(vs))
    _destination_hosts[id(vs)] = (vs, hosts)
    return hosts


# id(VirtualService) -> (it, the hosts it routes to); cleared when it grows past the bound.
_destination_hosts: dict[int, tuple[VirtualService, frozenset[str]]] = {}
_KEPT_HOSTS = 4096


def _destinations(value: Any) -> Iterator[Destination]:
    """Every Destination in a model value (walks dataclasses, tuples and mappings)."""
    if isinstance(value, Destination):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _destinations(getattr(value, item.name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _destinations(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _destinations(item)


def _proxyless_http(
    before: Sequence[ServiceRouting],
    after: Sequence[ServiceRouting],
    listeners: dict[str, Any],
    route_configs: dict[str, Any],
) -> None:
    """A proxyless client's listener and route table per service, for the routings
    that are not the ones it has."""
    old = {(r.service.host, r.service.number): r for r in before}
    new = {(r.service.host, r.service.number): r for r in after}
    for host, port in old.keys() - new.keys():
        del listeners[naming.listener_name(host, port)]
        del route_configs[naming.route_config_name(host, port)]
    for key, routing in new.items():
        if old.get(key) is routing:
            continue
        listener = build_listener(routing.service, routing)
        route_config = build_route_configuration(routing.service, routing)
        listeners[listener.name] = listener
        route_configs[route_config.name] = route_config


def _clusters(
    last: Translated,
    config: MeshConfig,
    services: Sequence[MeshService],
    node: NodeInfo,
    policy: PolicySettings,
    hosts: set[str],
    clusters: dict[str, Any],
    assignments: dict[str, Any],
    *,
    secured: set[str],
) -> None:
    """The clusters and load assignments of the services of ``hosts`` made again, and
    the clusters only (their TLS) of the services of ``secured``."""
    for service in last.services:
        if service.host in hosts:
            rule = destination_rule_for(last.config.destination_rules, service.host)
            for plan in service_clusters(service, rule):
                clusters.pop(plan.name, None)
                assignments.pop(plan.name, None)
    certs = CertSource.of(node)
    for service in services:
        if service.host not in hosts and service.host not in secured:
            continue
        rule = destination_rule_for(config.destination_rules, service.host)
        for plan in service_clusters(service, rule):
            clusters[plan.name] = secured_cluster(build_cluster(plan), plan, config, policy, certs)
            if service.host in hosts and service.resolution is Resolution.STATIC:
                assignments[plan.name] = build_load_assignment(plan, node, policy)


def _proxyless_inbound(
    before: Sequence[MeshService],
    after: Sequence[MeshService],
    config: MeshConfig,
    policy: PolicySettings,
    listeners: dict[str, Any],
    scope: SecurityScope,
) -> None:
    """The inbound listeners of the workloads that changed or whose policies did."""
    old = {(w.address, w.port): w for w in server_workloads(before)}
    new = {(w.address, w.port): w for w in server_workloads(after)}
    for address, port in old.keys() - new.keys():
        del listeners[inbound_listener_name(address, port)]
    for key, workload in new.items():
        if old.get(key) != workload or scope.touches_workload(workload.namespace, workload.hosts):
            listeners[inbound_listener_name(*key)] = proxyless_inbound_listener(
                config, workload, policy
            )
