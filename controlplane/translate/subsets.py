"""The clusters of a service: the whole service plus one per DestinationRule subset.

A subset cluster ``outbound|PORT|SUBSET|HOST`` holds only the endpoints whose
labels include all of the subset's labels (labels come from WorkloadEntries,
inline endpoints and registrations). The whole-service cluster
(``outbound|PORT||HOST``) always exists, subsets or not. Subset names are
unique within a rule (the config parser refuses a repeated one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.destination_policy import (
    EffectivePolicy,
    destination_rule_for,
    effective_policy,
)
from controlplane.model import MeshConfig
from controlplane.traffic_model import DestinationRule
from controlplane.translate import naming
from controlplane.translate.services import MeshEndpoint, MeshService


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """Everything one cluster (and its load assignment) is built from."""

    name: str
    service: MeshService
    subset: str  # "" for the whole service
    endpoints: tuple[MeshEndpoint, ...]
    policy: EffectivePolicy
    subset_labels: Mapping[str, str] = field(default_factory=dict)


def plan_clusters(config: MeshConfig, services: Sequence[MeshService]) -> tuple[ClusterPlan, ...]:
    """Every cluster of the mesh, in (host, port, subset) order."""
    plans: list[ClusterPlan] = []
    for service in services:
        rule = destination_rule_for(config.destination_rules, service.host)
        plans.extend(service_clusters(service, rule))
    return tuple(plans)


def service_clusters(service: MeshService, rule: DestinationRule | None) -> list[ClusterPlan]:
    """The whole-service cluster, then one per subset of ``rule`` (sorted by name)."""
    plans = [
        ClusterPlan(
            name=naming.cluster_name(service.host, service.number),
            service=service,
            subset="",
            endpoints=service.endpoints,
            policy=effective_policy(rule, service.number),
        )
    ]
    if rule is None:
        return plans
    for subset in sorted(rule.subsets, key=lambda s: s.name):
        plans.append(
            ClusterPlan(
                name=naming.cluster_name(service.host, service.number, subset.name),
                service=service,
                subset=subset.name,
                endpoints=select_endpoints(service.endpoints, subset.labels),
                policy=effective_policy(rule, service.number, subset.name),
                subset_labels=subset.labels,
            )
        )
    return plans


def select_endpoints(
    endpoints: Sequence[MeshEndpoint], labels: Mapping[str, str]
) -> tuple[MeshEndpoint, ...]:
    """The endpoints whose labels include every ``labels`` pair (all when empty)."""
    return tuple(e for e in endpoints if all(e.labels.get(k) == v for k, v in labels.items()))
