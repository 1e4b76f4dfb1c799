"""Cluster (CDS) -> ClusterResource, validated as gRPC's client validates it.

Discovery types EDS (over ADS), LOGICAL_DNS (exactly one endpoint) and
AGGREGATE (gRFC A37). The LB policy and its config (decode_cluster_lb), outlier
detection, circuit breakers, upstream HTTP options and the degraded switch
(decode_cluster_policies) are decoded into the model. Settings that change
traffic and that meshlib does not implement are rejected instead of silently
ignored. The TLS transport socket is decoded by decode_upstream_tls.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2

from meshlib.xds_client._decode_util import (
    DecodeContext,
    config_source_is_ads,
    duration_s,
    enum_name,
    unpack_any,
)
from meshlib.xds_client.decode_cluster_lb import common_lb_config, lb_choice
from meshlib.xds_client.decode_cluster_policies import (
    circuit_breakers,
    degraded,
    http_protocol_options,
    outlier_detection,
)
from meshlib.xds_client.decode_endpoints import socket_address
from meshlib.xds_client.decode_upstream_tls import decode_upstream_tls
from meshlib.xds_client.resources import ClusterResource, ClusterType

_Cluster = cluster_pb2.Cluster
_AGGREGATE_URL = "type.googleapis.com/" + aggregate_pb2.ClusterConfig.DESCRIPTOR.full_name
_DEFAULT_CONNECT_TIMEOUT_S = 5.0


def decode_cluster(msg: Any) -> ClusterResource:
    """Validate one ``envoy.config.cluster.v3.Cluster``."""
    ctx = DecodeContext("Cluster", msg.name)
    if not msg.name:
        raise ctx.error("name: required")
    _reject_unsupported(ctx, msg)
    connect_timeout_s = _DEFAULT_CONNECT_TIMEOUT_S
    if msg.HasField("connect_timeout"):
        connect_timeout_s = duration_s(msg.connect_timeout)
        if connect_timeout_s <= 0:
            raise ctx.error("connect_timeout: must be greater than 0")
    choice = lb_choice(ctx, msg)
    common: dict[str, Any] = {
        "name": msg.name,
        "lb_policy": choice.name,
        "connect_timeout_s": connect_timeout_s,
        "lb_config": choice.config,
        "common_lb_config": common_lb_config(ctx, msg, choice),
        "outlier_detection": outlier_detection(ctx, msg),
        "circuit_breakers": circuit_breakers(ctx, msg),
        "http_protocol_options": http_protocol_options(ctx, msg),
        "degraded": degraded(ctx, msg),
        "tls": decode_upstream_tls(ctx, msg.transport_socket)
        if msg.HasField("transport_socket")
        else None,
    }
    kind = msg.WhichOneof("cluster_discovery_type")
    if kind == "cluster_type":
        return ClusterResource(
            type=ClusterType.AGGREGATE,
            eds_service_name="",
            aggregate_clusters=_aggregate_clusters(ctx, msg.cluster_type),
            **common,
        )
    if msg.type == _Cluster.EDS:
        if not config_source_is_ads(msg.eds_cluster_config.eds_config):
            raise ctx.error("eds_cluster_config.eds_config: must be ads or self")
        service = msg.eds_cluster_config.service_name or msg.name
        if msg.name.startswith("xdstp:") and not msg.eds_cluster_config.service_name:
            raise ctx.error("eds_cluster_config.service_name: required with an xdstp: name")
        return ClusterResource(type=ClusterType.EDS, eds_service_name=service, **common)
    if msg.type == _Cluster.LOGICAL_DNS:
        host, port = _logical_dns_target(ctx, msg.load_assignment)
        return ClusterResource(
            type=ClusterType.LOGICAL_DNS,
            eds_service_name="",
            dns_host=host,
            dns_port=port,
            **common,
        )
    type_name = enum_name(ctx, _Cluster.DiscoveryType, msg.type, "type")
    raise ctx.error(f"type {type_name} is not supported (use EDS, LOGICAL_DNS or AGGREGATE)")


def _reject_unsupported(ctx: DecodeContext, msg: Any) -> None:
    if msg.transport_socket_matches:
        raise ctx.error("transport_socket_matches: not supported")
    lrs = msg.lrs_server
    if msg.HasField("lrs_server") and lrs.WhichOneof("config_source_specifier") != "self":
        raise ctx.error("lrs_server: must be self")


def _aggregate_clusters(ctx: DecodeContext, cluster_type: Any) -> tuple[str, ...]:
    where = "cluster_type"
    is_aggregate = cluster_type.name == "envoy.clusters.aggregate"
    if not is_aggregate and cluster_type.typed_config.type_url != _AGGREGATE_URL:
        raise ctx.error(f"{where}: custom cluster type {cluster_type.name!r} is not supported")
    config = unpack_any(ctx, cluster_type.typed_config, aggregate_pb2.ClusterConfig, where)
    if not config.clusters:
        raise ctx.error(f"{where}.typed_config.clusters: must not be empty")
    return tuple(config.clusters)


def _logical_dns_target(ctx: DecodeContext, assignment: Any) -> tuple[str, int]:
    where = "load_assignment"
    groups = assignment.endpoints
    if len(groups) != 1 or len(groups[0].lb_endpoints) != 1:
        raise ctx.error(
            f"{where}: a LOGICAL_DNS cluster needs exactly one locality with one endpoint"
        )
    lb_endpoint = groups[0].lb_endpoints[0]
    if lb_endpoint.WhichOneof("host_identifier") != "endpoint":
        raise ctx.error(f"{where}.endpoints[0].lb_endpoints[0].endpoint: required")
    at = f"{where}.endpoints[0].lb_endpoints[0].endpoint.address"
    address = lb_endpoint.endpoint.address
    if address.socket_address.resolver_name:
        raise ctx.error(f"{at}.socket_address.resolver_name: custom resolvers are not supported")
    return socket_address(ctx, address, at)
