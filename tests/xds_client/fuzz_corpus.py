"""Valid resources of every type for the fuzzer to start from.

The rich ones come from the real control plane's translator (every route and
cluster feature it can express) plus a few hand-built shapes it never emits
(aggregate clusters, typed LB policies, inline route configs) and a serving
workload's inbound listener with mTLS, RBAC and JWT filters, so mutations reach
every decoder. Each seed is checked to decode cleanly.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

from controlplane.config import load_config
from controlplane.model import NodeInfo
from controlplane.translate import translate
from meshlib.xds_client.resource_types import RESOURCE_TYPES
from tests.controlplane.cluster_cases import feature_mesh
from tests.controlplane.every_route_feature import every_feature
from tests.support.backends import Backend
from tests.xds_client import xds_builders as b

INBOUND_PREFIX = "xds.istio.io/grpc/lds/inbound/"


@cache
def seeds() -> dict[str, tuple[Any, ...]]:
    """type URL -> valid seed messages (each decodes without error)."""
    out: dict[str, list[Any]] = {url: [] for url in RESOURCE_TYPES}
    node = NodeInfo(id="fuzz", cluster="fuzz", locality="r1/z1/s1")
    for config in (every_feature(Backend("a", 7001), Backend("b", 7002)), feature_mesh(7001)):
        for url, resources in translate(config, [], node).items():
            out[url].extend(resources[name] for name in sorted(resources))
    out[b.LDS].extend(_security_inbound_listeners(node))
    out[b.LDS].append(_inline_route_listener())
    out[b.CDS].extend((_aggregate_cluster(), _typed_policy_cluster(), _logical_dns_cluster()))
    for url, messages in out.items():
        for message in messages:
            RESOURCE_TYPES[url].decode(b.pack(message))  # a seed that fails is a bad seed
    return {url: tuple(messages) for url, messages in out.items()}


def _security_inbound_listeners(node: NodeInfo) -> list[Any]:
    """Inbound listeners with mTLS, RBAC (AuthorizationPolicy, intentions) and JWT."""
    from tests.interop.security_mesh import mesh_yaml
    from tests.interop.test_grpcio_intentions import INTENTIONS
    from tests.interop.test_grpcio_rbac import POLICIES

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mesh.yaml"
        path.write_text(mesh_yaml(50052, "STRICT", POLICIES + INTENTIONS))
        config = load_config(path)
    listeners = translate(config, [], node)[b.LDS]
    return [listeners[name] for name in sorted(listeners) if name.startswith(INBOUND_PREFIX)]


def _inline_route_listener() -> Any:
    manager = b.hcm()
    manager.ClearField("rds")
    manager.route_config.CopyFrom(b.route_config("inline", "c1"))
    return b.listener("inline:80", manager=manager)


def _aggregate_cluster() -> Any:
    msg = cluster_pb2.Cluster(name="agg")
    msg.cluster_type.name = "envoy.clusters.aggregate"
    msg.cluster_type.typed_config.Pack(aggregate_pb2.ClusterConfig(clusters=["c1", "c2"]))
    return msg


def _typed_policy_cluster() -> Any:
    msg = b.cluster("typed")
    policies = msg.load_balancing_policy.policies
    ring = ring_hash_pb2.RingHash(hash_function=ring_hash_pb2.RingHash.XX_HASH)
    ring.minimum_ring_size.value = 64
    least = least_request_pb2.LeastRequest()
    least.choice_count.value = 2
    wrr = wrr_locality_pb2.WrrLocality()
    wrr.endpoint_picking_policy.policies.add().typed_extension_config.typed_config.Pack(
        round_robin_pb2.RoundRobin()
    )
    for i, config in enumerate((ring, least, wrr)):
        entry = policies.add().typed_extension_config
        entry.name = f"p{i}"
        entry.typed_config.Pack(config)
    return msg


def _logical_dns_cluster() -> Any:
    msg = cluster_pb2.Cluster(name="dns", type=cluster_pb2.Cluster.LOGICAL_DNS)
    msg.load_assignment.CopyFrom(b.cluster_load_assignment("dns"))
    msg.load_assignment.endpoints[0].lb_endpoints[
        0
    ].endpoint.address.socket_address.address = "svc.example"
    return msg
