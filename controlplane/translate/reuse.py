"""What translations of the same inputs for different nodes share, made once.

A change is checked by translating it for a proxyless client, an Envoy sidecar
and every connected node shape; the services, their cluster plans, the routing
of each service and the load assignments (for callers with the same labels,
namespace and locality: what those read of their caller) are the same for each.
They are kept for the latest inputs (compared by identity: inputs are immutable)
and reused; each translation gets its own copy of an assignment message, and the
routings are only read (the builders copy the routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate.caller_node import node_labels
from controlplane.translate.endpoints import build_load_assignment
from controlplane.translate.errors import TranslationError
from controlplane.translate.routes import ServiceRouting, plan_routing
from controlplane.translate.security_settings import PolicySettings
from controlplane.translate.services import MeshService, collect_services
from controlplane.translate.source_match import Caller
from controlplane.translate.subsets import ClusterPlan, plan_clusters


@dataclass(slots=True)
class SharedWork:
    config: MeshConfig
    workloads: Sequence[RegisteredWorkload]
    services: tuple[MeshService, ...]
    _plans: tuple[ClusterPlan, ...] | None = None
    _assignments: dict[tuple[object, ...], endpoint_pb2.ClusterLoadAssignment] = field(
        default_factory=dict
    )
    _routings: dict[tuple[object, ...], tuple[ServiceRouting, ...]] = field(default_factory=dict)

    @property
    def plans(self) -> tuple[ClusterPlan, ...]:
        """The cluster plans of :attr:`services`, made when first asked (an incremental
        translation or the ambiguity check reads the services only)."""
        plans = self._plans
        if plans is None:
            plans = self._plans = plan_clusters(self.config, self.services)
        return plans

    def routing(self, caller: Caller) -> tuple[ServiceRouting, ...]:
        """``plan_routing`` of the services for ``caller``, once per kind of caller (its
        labels and namespace, all that source matches read). Read-only: builders copy."""
        key = (tuple(sorted(caller.labels.items())), caller.namespace)
        routings = self._routings.get(key)
        if routings is None:
            routings = self._routings[key] = plan_routing(self.services, self.config, caller)
        return routings

    def load_assignment(
        self, plan: ClusterPlan, node: NodeInfo, policy: PolicySettings
    ) -> endpoint_pb2.ClusterLoadAssignment:
        """``build_load_assignment`` for one of :attr:`plans`, once per kind of caller."""
        try:
            caller = (node.locality, tuple(sorted(node_labels(node).items())))
        except TranslationError:  # labels translate refuses: let it say so
            return build_load_assignment(plan, node, policy)
        key = (plan.name, caller, policy)
        built = self._assignments.get(key)
        if built is None:
            built = self._assignments[key] = build_load_assignment(plan, node, policy)
        assignment = endpoint_pb2.ClusterLoadAssignment()
        assignment.CopyFrom(built)  # each translation its own message (a copy is cheap)
        return assignment


_latest: SharedWork | None = None


def shared_work(config: MeshConfig, workloads: Sequence[RegisteredWorkload]) -> SharedWork:
    """The services and plans of these inputs: made now, or kept from the last call."""
    global _latest
    latest = _latest
    if latest is not None and latest.config is config and latest.workloads is workloads:
        return latest
    latest = _latest = SharedWork(config, workloads, collect_services(config, workloads))
    return latest
