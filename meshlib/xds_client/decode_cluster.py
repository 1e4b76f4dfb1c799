"""Cluster (CDS) -> ClusterResource, validated as gRPC's client validates it.

Discovery types EDS (over ADS), LOGICAL_DNS (exactly one endpoint) and
AGGREGATE (gRFC A37). The LB policy comes from ``load_balancing_policy`` (the
first supported entry, gRFC A52) or else the ``lb_policy`` enum; either way it
becomes a name in meshlib.balancing's registry. Settings that change traffic
and that meshlib does not implement yet (TLS, outlier detection, circuit
breakers) are rejected instead of silently ignored.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

from meshlib.xds_client._decode_util import (
    DecodeContext,
    config_source_is_ads,
    duration_s,
    unpack_any,
)
from meshlib.xds_client.decode_endpoints import socket_address
from meshlib.xds_client.resources import ClusterResource, ClusterType

_Cluster = cluster_pb2.Cluster

_LB_POLICY_NAMES = {
    _Cluster.ROUND_ROBIN: "round_robin",
    _Cluster.RING_HASH: "ring_hash",
    _Cluster.LEAST_REQUEST: "least_request",
    _Cluster.RANDOM: "random",
    _Cluster.MAGLEV: "maglev",
}
_POLICY_PREFIX = "type.googleapis.com/envoy.extensions.load_balancing_policies."
_TYPED_LB_POLICY_NAMES = {
    _POLICY_PREFIX + "round_robin.v3.RoundRobin": "round_robin",
    _POLICY_PREFIX + "ring_hash.v3.RingHash": "ring_hash",
    _POLICY_PREFIX + "least_request.v3.LeastRequest": "least_request",
    _POLICY_PREFIX + "random.v3.Random": "random",
    _POLICY_PREFIX + "maglev.v3.Maglev": "maglev",
}
_WRR_LOCALITY_URL = "type.googleapis.com/" + wrr_locality_pb2.WrrLocality.DESCRIPTOR.full_name
_AGGREGATE_URL = "type.googleapis.com/" + aggregate_pb2.ClusterConfig.DESCRIPTOR.full_name
_MAX_RING_SIZE = 8 * 1024 * 1024
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
    common: dict[str, Any] = {
        "name": msg.name,
        "lb_policy": _lb_policy(ctx, msg),
        "connect_timeout_s": connect_timeout_s,
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
    type_name = _Cluster.DiscoveryType.Name(msg.type)
    raise ctx.error(f"type {type_name} is not supported (use EDS, LOGICAL_DNS or AGGREGATE)")


def _reject_unsupported(ctx: DecodeContext, msg: Any) -> None:
    for field in ("transport_socket", "outlier_detection", "circuit_breakers"):
        if msg.HasField(field):
            raise ctx.error(f"{field}: not supported yet")
    if msg.transport_socket_matches:
        raise ctx.error("transport_socket_matches: not supported")
    lrs = msg.lrs_server
    if msg.HasField("lrs_server") and lrs.WhichOneof("config_source_specifier") != "self":
        raise ctx.error("lrs_server: must be self")


def _lb_policy(ctx: DecodeContext, msg: Any) -> str:
    if msg.HasField("load_balancing_policy"):
        return _typed_lb_policy(ctx, msg.load_balancing_policy, "load_balancing_policy")
    name = _LB_POLICY_NAMES.get(msg.lb_policy)
    if name is None:
        policy = _Cluster.LbPolicy.Name(msg.lb_policy)
        raise ctx.error(f"lb_policy {policy} is not supported")
    if name == "ring_hash" and msg.HasField("ring_hash_lb_config"):
        _check_ring_hash(ctx, msg.ring_hash_lb_config)
    if name == "least_request" and msg.least_request_lb_config.HasField("choice_count"):
        count = msg.least_request_lb_config.choice_count.value
        if count < 2:  # gRFC A48
            raise ctx.error(f"least_request_lb_config.choice_count: must be >= 2, got {count}")
    return name


def _check_ring_hash(ctx: DecodeContext, config: Any) -> None:
    if config.hash_function != _Cluster.RingHashLbConfig.XX_HASH:
        raise ctx.error("ring_hash_lb_config.hash_function: only XX_HASH is supported")
    has = config.HasField
    low = config.minimum_ring_size.value if has("minimum_ring_size") else 1024
    high = config.maximum_ring_size.value if has("maximum_ring_size") else _MAX_RING_SIZE
    if high > _MAX_RING_SIZE:
        raise ctx.error(f"ring_hash_lb_config.maximum_ring_size: above {_MAX_RING_SIZE}")
    if low > high:
        raise ctx.error("ring_hash_lb_config: minimum_ring_size is above maximum_ring_size")


def _typed_lb_policy(ctx: DecodeContext, policy: Any, where: str) -> str:
    """The first policy in the list meshlib supports (gRFC A52); wrr_locality is unwrapped
    because meshlib always weights localities."""
    seen: list[str] = []
    for i, entry in enumerate(policy.policies):
        config = entry.typed_extension_config.typed_config
        if config.type_url == _WRR_LOCALITY_URL:
            at = f"{where}.policies[{i}]"
            wrr = unpack_any(ctx, config, wrr_locality_pb2.WrrLocality, at)
            inner = wrr.endpoint_picking_policy
            return _typed_lb_policy(ctx, inner, f"{at}.endpoint_picking_policy")
        name = _TYPED_LB_POLICY_NAMES.get(config.type_url)
        if name is not None:
            return name
        seen.append(config.type_url or "(no typed_config)")
    listed = ", ".join(seen) or "none"
    raise ctx.error(f"{where}: no supported policy (got {listed})")


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
