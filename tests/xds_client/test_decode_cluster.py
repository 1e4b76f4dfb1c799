from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3 import (
    client_side_weighted_round_robin_pb2 as cswrr_pb2,
)
from envoy.extensions.load_balancing_policies.pick_first.v3 import pick_first_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import CLUSTER
from meshlib.xds_client.resources import ClusterResource, ClusterType, RoundRobinConfig
from tests.xds_client import xds_builders as b

Cluster = cluster_pb2.Cluster
# A policy meshlib does not implement (it needs ORCA load reports).
CSWRR = cswrr_pb2.ClientSideWeightedRoundRobin()


def decode(message: Any) -> ClusterResource:
    return CLUSTER.decode(b.pack(message))


def changed(change: Callable[[Any], None], name: str = "outbound|80||a") -> Any:
    msg = b.cluster(name)
    change(msg)
    return msg


def policy(*configs: Any) -> Any:
    return cluster_pb2.LoadBalancingPolicy(
        policies=[
            {"typed_extension_config": {"name": f"p{i}", "typed_config": b.pack(c)}}
            for i, c in enumerate(configs)
        ]
    )


def test_eds_cluster_defaults() -> None:
    got = decode(b.cluster("c1"))
    assert got == ClusterResource(
        name="c1",
        type=ClusterType.EDS,
        eds_service_name="c1",
        lb_policy="round_robin",
        lb_config=RoundRobinConfig(),
    )
    assert decode(b.cluster("c1", service_name="svc-eds")).eds_service_name == "svc-eds"


@pytest.mark.parametrize(
    ("enum", "name"),
    [
        (Cluster.ROUND_ROBIN, "round_robin"),
        (Cluster.RING_HASH, "ring_hash"),
        (Cluster.LEAST_REQUEST, "least_request"),
        (Cluster.RANDOM, "random"),
        (Cluster.MAGLEV, "maglev"),
    ],
)
def test_lb_policy_names(enum: int, name: str) -> None:
    assert decode(changed(lambda c: setattr(c, "lb_policy", enum))).lb_policy == name


def test_typed_lb_policy_first_supported_and_wrr_locality_unwrapped() -> None:
    wrr = wrr_locality_pb2.WrrLocality(
        endpoint_picking_policy=policy(CSWRR, ring_hash_pb2.RingHash())
    )
    got = decode(changed(lambda c: c.load_balancing_policy.CopyFrom(policy(wrr))))
    assert got.lb_policy == "ring_hash"
    got = decode(
        changed(
            lambda c: c.load_balancing_policy.CopyFrom(
                policy(CSWRR, round_robin_pb2.RoundRobin(), pick_first_pb2.PickFirst())
            )
        )
    )
    assert got.lb_policy == "round_robin"


def test_connect_timeout() -> None:
    assert (
        decode(changed(lambda c: setattr(c.connect_timeout, "seconds", 2))).connect_timeout_s == 2
    )


def test_logical_dns() -> None:
    def change(c: Any) -> None:
        c.type = Cluster.LOGICAL_DNS
        c.ClearField("eds_cluster_config")
        c.load_assignment.CopyFrom(
            b.cluster_load_assignment(
                c.name, b.locality_endpoints(endpoints=(b.lb_endpoint("db.example", 5432),))
            )
        )

    got = decode(changed(change))
    assert (got.type, got.dns_host, got.dns_port) == (ClusterType.LOGICAL_DNS, "db.example", 5432)


def aggregate(*children: str) -> Callable[[Any], None]:
    def change(c: Any) -> None:
        c.ClearField("type")
        c.ClearField("eds_cluster_config")
        c.cluster_type.name = "envoy.clusters.aggregate"
        c.cluster_type.typed_config.CopyFrom(
            b.pack(aggregate_pb2.ClusterConfig(clusters=list(children)))
        )

    return change


def test_aggregate() -> None:
    got = decode(changed(aggregate("primary", "fallback")))
    assert got.type is ClusterType.AGGREGATE
    assert got.aggregate_clusters == ("primary", "fallback")


def murmur_ring_hash(c: Any) -> None:
    c.lb_policy = Cluster.RING_HASH
    c.ring_hash_lb_config.hash_function = Cluster.RingHashLbConfig.MURMUR_HASH_2


def inverted_ring_sizes(c: Any) -> None:
    c.lb_policy = Cluster.RING_HASH
    c.ring_hash_lb_config.minimum_ring_size.value = 5000
    c.ring_hash_lb_config.maximum_ring_size.value = 10


def two_dns_endpoints(c: Any) -> None:
    c.type = Cluster.LOGICAL_DNS
    group = b.locality_endpoints(endpoints=(b.lb_endpoint(), b.lb_endpoint()))
    c.load_assignment.CopyFrom(b.cluster_load_assignment(c.name, group))


def few_choices(c: Any) -> None:
    c.lb_policy = Cluster.LEAST_REQUEST
    c.least_request_lb_config.choice_count.value = 1


def redis_cluster_type(c: Any) -> None:
    c.ClearField("type")
    c.cluster_type.name = "envoy.clusters.redis"


INVALID: list[tuple[str, Callable[[], Any], str]] = [
    ("no name", lambda: b.cluster(""), 'Cluster "": name: required'),
    (
        "cluster provided",
        lambda: changed(lambda c: setattr(c, "lb_policy", Cluster.CLUSTER_PROVIDED)),
        'Cluster "outbound|80||a": lb_policy CLUSTER_PROVIDED is not supported',
    ),
    (
        "typed policy unknown",
        lambda: changed(lambda c: c.load_balancing_policy.CopyFrom(policy(CSWRR))),
        "load_balancing_policy: no supported policy (got type.googleapis.com/envoy.extensions."
        "load_balancing_policies.client_side_weighted_round_robin.v3."
        "ClientSideWeightedRoundRobin)",
    ),
    (
        "ring hash murmur",
        lambda: changed(murmur_ring_hash),
        "ring_hash_lb_config.hash_function: only XX_HASH is supported",
    ),
    (
        "ring hash sizes",
        lambda: changed(inverted_ring_sizes),
        "minimum_ring_size is above maximum_ring_size",
    ),
    (
        "least request choice count",
        lambda: changed(few_choices),
        "least_request_lb_config.choice_count: must be >= 2, got 1",
    ),
    (
        "xdstp name without service name",
        lambda: b.cluster("xdstp://authority/envoy.config.cluster.v3.Cluster/c"),
        "eds_cluster_config.service_name: required with an xdstp: name",
    ),
    (
        "static type",
        lambda: changed(lambda c: setattr(c, "type", Cluster.STATIC)),
        "type STATIC is not supported",
    ),
    (
        "eds not over ads",
        lambda: changed(lambda c: c.eds_cluster_config.eds_config.path_config_source.SetInParent()),
        "eds_cluster_config.eds_config: must be ads or self",
    ),
    (
        "logical dns with two endpoints",
        lambda: changed(two_dns_endpoints),
        "load_assignment: a LOGICAL_DNS cluster needs exactly one locality with one endpoint",
    ),
    (
        "aggregate empty",
        lambda: changed(aggregate()),
        "cluster_type.typed_config.clusters: must not be empty",
    ),
    (
        "custom cluster type",
        lambda: changed(redis_cluster_type),
        "cluster_type: custom cluster type 'envoy.clusters.redis' is not supported",
    ),
    (
        "tls socket without a config",
        lambda: changed(lambda c: setattr(c.transport_socket, "name", "tls")),
        "transport_socket.typed_config: required (an UpstreamTlsContext)",
    ),
    (
        "negative connect timeout",
        lambda: changed(lambda c: setattr(c.connect_timeout, "seconds", -1)),
        "connect_timeout: must be greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_cluster(build: Callable[[], Any], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(build())
    assert expected in str(info.value)
