"""EDS: a ClusterLoadAssignment per EDS cluster (a STATIC service or one of its subsets).

One LocalityLbEndpoints per (priority, locality), weighted by the sum of its
endpoints' weights unless ``distribute`` says otherwise; priorities and
weights depend on the asking node's locality (see :mod:`.locality_priority`),
so nodes in different localities get different assignments. Endpoint labels
travel in the ``envoy.lb`` metadata, where Envoy's subset load balancer looks
for them; an endpoint's SPIFFE ID (its registration's, or its WorkloadEntry's
service account's) in ``meshlib.identity``: meshlib checks it against the
cluster's ``match_subject_alt_names`` and expects the peer to present it.
"""

from __future__ import annotations

import functools

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from controlplane.model import NodeInfo
from controlplane.translate.common import socket_address
from controlplane.translate.locality_priority import LocalityGroup, locality_groups
from controlplane.translate.security_settings import (
    DEFAULT_POLICY_SETTINGS,
    PolicySettings,
    endpoint_identity,
)
from controlplane.translate.services import MeshEndpoint
from controlplane.translate.subsets import ClusterPlan

LABELS_METADATA_KEY = "envoy.lb"
MESH_METADATA_KEY, IDENTITY_KEY = "meshlib", "identity"


def build_load_assignment(
    plan: ClusterPlan, node: NodeInfo, settings: PolicySettings = DEFAULT_POLICY_SETTINGS
) -> endpoint_pb2.ClusterLoadAssignment:
    groups = locality_groups(plan.endpoints, node, plan.policy)
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=plan.name, endpoints=[_locality_endpoints(g, settings) for g in groups]
    )


def parse_locality(locality: str) -> base_pb2.Locality:
    """``region/zone/subzone`` (trailing parts optional) to the proto."""
    region, zone, sub_zone = ([*locality.split("/", 2), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def _locality_endpoints(
    group: LocalityGroup, settings: PolicySettings
) -> endpoint_components_pb2.LocalityLbEndpoints:
    return endpoint_components_pb2.LocalityLbEndpoints(
        locality=parse_locality(group.locality),
        lb_endpoints=[_lb_endpoint(e, settings) for e in group.endpoints],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=group.weight),
        priority=group.priority,
    )


def _lb_endpoint(
    endpoint: MeshEndpoint, settings: PolicySettings
) -> endpoint_components_pb2.LbEndpoint:
    lb_endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=socket_address(endpoint.address, endpoint.port)
        ),
        health_status=health_check_pb2.HealthStatus.HEALTHY,
        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
    )
    if endpoint.labels:
        labels = _struct(tuple(sorted(endpoint.labels.items())))
        lb_endpoint.metadata.filter_metadata[LABELS_METADATA_KEY].CopyFrom(labels)
    identity = endpoint_identity(endpoint, settings)
    if identity:
        mesh = _struct(((IDENTITY_KEY, identity),))
        lb_endpoint.metadata.filter_metadata[MESH_METADATA_KEY].CopyFrom(mesh)
    return lb_endpoint


@functools.lru_cache(maxsize=4096)
def _struct(items: tuple[tuple[str, str], ...]) -> struct_pb2.Struct:
    """A Struct of string values, built once per distinct content (endpoints share a
    few label sets; building one is slow): callers copy it, never change it."""
    struct = struct_pb2.Struct()
    struct.update(dict(items))
    return struct
