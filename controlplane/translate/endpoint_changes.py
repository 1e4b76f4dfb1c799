"""Bring a translation up to date when only services' endpoints changed.

Registrations, deregistrations and expiries of more endpoints of the services
the mesh has change endpoints, nothing else: routes and outbound listeners do
not read endpoints, so only what does is built again, for the services whose
endpoints changed: their clusters (upstream mTLS reads the endpoints'
identities) and load assignments, the proxyless inbound listeners of the
server workloads that changed, and a sidecar's inbound listener. The result
equals :func:`controlplane.translate.translate` of the new inputs (tests hold
the two equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from controlplane.destination_policy import destination_rule_for
from controlplane.model import MeshConfig, NodeInfo, Resolution
from controlplane.translate import Resources
from controlplane.translate.clusters import build_cluster
from controlplane.translate.endpoints import build_load_assignment
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
from controlplane.translate.subsets import service_clusters
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)


def endpoints_changed(
    before: Sequence[MeshService], after: Sequence[MeshService]
) -> set[str] | None:
    """The hosts whose endpoints differ; None when the services differ otherwise."""
    old = {(s.host, s.number): s for s in before}
    new = {(s.host, s.number): s for s in after}
    if old.keys() != new.keys():
        return None
    changed: set[str] = set()
    for key, service in new.items():
        previous = old[key]
        if previous == service:
            continue
        if dataclasses.replace(previous, endpoints=service.endpoints) != service:
            return None
        changed.add(service.host)
    return changed


def retranslate_endpoints(
    previous: Resources,
    before: Sequence[MeshService],
    config: MeshConfig,
    after: Sequence[MeshService],
    node: NodeInfo,
    policy: PolicySettings,
) -> Resources | None:
    """``previous`` (translated for ``config``, ``node`` and the workloads that made the
    services ``before``) for the services ``after``; None when they differ in more than
    endpoints (translate them whole then)."""
    changed = endpoints_changed(before, after)
    if changed is None:
        return None
    listeners = dict(previous[LISTENER_TYPE_URL])
    clusters = dict(previous[CLUSTER_TYPE_URL])
    assignments = dict(previous[ENDPOINTS_TYPE_URL])
    certs = CertSource.of(node)
    for service in after:
        if service.host not in changed:
            continue
        rule = destination_rule_for(config.destination_rules, service.host)
        for plan in service_clusters(service, rule):
            cluster = secured_cluster(build_cluster(plan), plan, config, policy, certs)
            clusters[plan.name] = cluster
            if service.resolution is Resolution.STATIC:
                assignments[plan.name] = build_load_assignment(plan, node, policy)
    if has_sidecar_inbound(node):
        inbound, app_cluster = sidecar_inbound(config, after, node, policy)
        listeners[inbound.name] = inbound
        clusters[app_cluster.name] = app_cluster
    elif not node.is_sidecar:
        old = {(w.address, w.port): w for w in server_workloads(before)}
        new = {(w.address, w.port): w for w in server_workloads(after)}
        for address, port in old.keys() - new.keys():
            del listeners[inbound_listener_name(address, port)]
        for key, workload in new.items():
            if old.get(key) != workload:
                listeners[inbound_listener_name(*key)] = proxyless_inbound_listener(
                    config, workload, policy
                )
    return {
        LISTENER_TYPE_URL: listeners,
        ROUTE_CONFIG_TYPE_URL: dict(previous[ROUTE_CONFIG_TYPE_URL]),
        CLUSTER_TYPE_URL: clusters,
        ENDPOINTS_TYPE_URL: assignments,
    }
