"""CDS: one cluster per service.

STATIC services get an EDS cluster fed over ADS; DNS services a LOGICAL_DNS
cluster holding the one hostname to resolve (gRPC's xDS client supports
LOGICAL_DNS, not STRICT_DNS).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2

from controlplane.model import Resolution
from controlplane.translate import naming
from controlplane.translate.common import ads_config_source, socket_address
from controlplane.translate.services import MeshService

CONNECT_TIMEOUT_S = 5


def build_cluster(service: MeshService) -> cluster_pb2.Cluster:
    name = naming.cluster_name(service.host, service.number)
    if service.resolution is Resolution.DNS:
        return logical_dns_cluster(name, *_dns_target(service))
    return eds_cluster(name)


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=name
        ),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_S),
    )


def logical_dns_cluster(name: str, host: str, port: int) -> cluster_pb2.Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(host, port))
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.LOGICAL_DNS,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_S),
    )


def _dns_target(service: MeshService) -> tuple[str, int]:
    """The one endpoint's address and port, else the service's own host."""
    if service.endpoints:
        endpoint = service.endpoints[0]
        return endpoint.address, endpoint.port
    port = service.port.target_port if service.port.target_port is not None else service.number
    return service.host, port
