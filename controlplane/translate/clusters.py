"""CDS: one cluster per service, plus one per DestinationRule subset.

STATIC services get an EDS cluster fed over ADS; DNS services a LOGICAL_DNS
cluster holding the one hostname to resolve (gRPC's xDS client supports
LOGICAL_DNS, not STRICT_DNS). The DestinationRule's policy in force for the
cluster (:mod:`.policy`) sets its load balancer, outlier detection, circuit
breakers and protocol options, each in its own module. A degraded ServiceEntry
marks every cluster of the service with ``filter_metadata["meshlib"]
{"degraded": true}``, which meshlib's fallback decorators read.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2, struct_pb2

from controlplane.destination_policy import EffectivePolicy
from controlplane.model import Resolution
from controlplane.translate.circuit_breakers import apply_circuit_breakers
from controlplane.translate.common import ads_config_source, socket_address
from controlplane.translate.errors import TranslationError
from controlplane.translate.lb_policy import apply_load_balancer
from controlplane.translate.outlier import apply_outlier_detection
from controlplane.translate.protocol_options import apply_protocol_options
from controlplane.translate.subsets import ClusterPlan

CONNECT_TIMEOUT_S = 5
MESHLIB_METADATA_KEY = "meshlib"


def build_cluster(plan: ClusterPlan) -> cluster_pb2.Cluster:
    service, policy = plan.service, plan.policy
    if service.resolution is Resolution.DNS:
        cluster = logical_dns_cluster(plan.name, *_dns_target(plan))
    else:
        cluster = eds_cluster(plan.name)
    weighted = _distributes(policy)
    apply_load_balancer(cluster, policy.load_balancer, policy.where, locality_weighted=weighted)
    apply_outlier_detection(cluster, policy)
    apply_circuit_breakers(cluster, policy)
    apply_protocol_options(cluster, service.port.protocol, policy.connection_pool, policy.where)
    if weighted and not cluster.HasField("load_balancing_policy"):
        # Envoy ignores locality weights unless told to use them.
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    if service.degraded:
        marker = struct_pb2.Struct()
        marker.update({"degraded": True})
        cluster.metadata.filter_metadata[MESHLIB_METADATA_KEY].CopyFrom(marker)
    return cluster


def _distributes(policy: EffectivePolicy) -> bool:
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    return setting is not None and setting.enabled and bool(setting.distribute)


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


def _dns_target(plan: ClusterPlan) -> tuple[str, int]:
    """The one endpoint's address and port, else the service's own host.

    A subset of a DNS service must select its endpoint: a LOGICAL_DNS cluster
    cannot be empty.
    """
    if plan.endpoints:
        endpoint = plan.endpoints[0]
        return endpoint.address, endpoint.port
    service = plan.service
    if service.endpoints or plan.subset_labels:
        raise TranslationError(
            f"{plan.policy.where}: subset {plan.subset!r} selects no endpoint of DNS service "
            f"{service.host}:{service.number} (a LOGICAL_DNS cluster needs one)"
        )
    port = service.port.target_port if service.port.target_port is not None else service.number
    return service.host, port
