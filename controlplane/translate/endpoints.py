"""EDS: a ClusterLoadAssignment per STATIC service.

One LocalityLbEndpoints per distinct locality (sorted), weighted by the sum of
its endpoints' weights, all at priority 0. Endpoint labels travel in the
``envoy.lb`` metadata, where Envoy's subset load balancer looks for them.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from controlplane.translate import naming
from controlplane.translate.common import socket_address
from controlplane.translate.services import MeshEndpoint, MeshService

LABELS_METADATA_KEY = "envoy.lb"


def build_load_assignment(service: MeshService) -> endpoint_pb2.ClusterLoadAssignment:
    return load_assignment(naming.cluster_name(service.host, service.number), service.endpoints)


def load_assignment(
    cluster: str, endpoints: Iterable[MeshEndpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    """Group endpoints by locality; the grouping is sorted so output is stable."""
    by_locality: dict[str, list[MeshEndpoint]] = {}
    for endpoint in endpoints:
        by_locality.setdefault(endpoint.locality, []).append(endpoint)
    groups = [
        _locality_endpoints(locality, sorted(members, key=lambda e: (e.address, e.port)))
        for locality, members in sorted(by_locality.items())
    ]
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster, endpoints=groups)


def parse_locality(locality: str) -> base_pb2.Locality:
    """``region/zone/subzone`` (trailing parts optional) to the proto."""
    region, zone, sub_zone = ([*locality.split("/", 2), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def _locality_endpoints(
    locality: str, members: list[MeshEndpoint]
) -> endpoint_components_pb2.LocalityLbEndpoints:
    return endpoint_components_pb2.LocalityLbEndpoints(
        locality=parse_locality(locality),
        lb_endpoints=[_lb_endpoint(e) for e in members],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=sum(e.weight for e in members)),
        priority=0,
    )


def _lb_endpoint(endpoint: MeshEndpoint) -> endpoint_components_pb2.LbEndpoint:
    lb_endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=socket_address(endpoint.address, endpoint.port)
        ),
        health_status=health_check_pb2.HealthStatus.HEALTHY,
        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
    )
    if endpoint.labels:
        labels = struct_pb2.Struct()
        labels.update(dict(sorted(endpoint.labels.items())))
        lb_endpoint.metadata.filter_metadata[LABELS_METADATA_KEY].CopyFrom(labels)
    return lb_endpoint
