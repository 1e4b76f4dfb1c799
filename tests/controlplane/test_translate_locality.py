"""EDS priorities and locality weights per client locality, as Istio computes them."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.model import MeshConfig, NodeInfo, WorkloadSpec
from controlplane.traffic_model import (
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    OutlierDetection,
    SimpleLB,
    Subset,
    TrafficPolicy,
)
from controlplane.translate import translate
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from tests.controlplane.cluster_cases import endpoint, rule, service

CLUSTER = "outbound|50051||svc"

# one endpoint per locality; the address says where it is
SPREAD = (
    endpoint("10.1.1.1", locality="r1/z1/s1"),
    endpoint("10.1.1.2", locality="r1/z1/s2"),
    endpoint("10.1.2.1", locality="r1/z2/s1"),
    endpoint("10.2.1.1", locality="r2/z1/s1"),
    endpoint("10.3.1.1", locality="r3/z1/s1"),
)

Row = tuple[int, str, int, tuple[str, ...]]  # priority, locality, weight, addresses


def rows(
    policy: TrafficPolicy | None,
    client: str,
    *,
    endpoints: tuple[WorkloadSpec, ...] = SPREAD,
    labels: dict[str, str] | None = None,
    cluster: str = CLUSTER,
    subsets: tuple[Subset, ...] = (),
) -> list[Row]:
    config = MeshConfig(
        service_entries=(service("svc", *endpoints),),
        destination_rules=(rule("svc", policy, *subsets),),
    )
    metadata: dict[str, object] = {"LABELS": labels} if labels else {}
    resources = translate(config, (), NodeInfo(id="n", locality=client, metadata=metadata))
    assignment = resources[ENDPOINTS_TYPE_URL][cluster]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    result = []
    for group in assignment.endpoints:
        where = "/".join((group.locality.region, group.locality.zone, group.locality.sub_zone))
        addrs = tuple(e.endpoint.address.socket_address.address for e in group.lb_endpoints)
        result.append((group.priority, where.rstrip("/"), group.load_balancing_weight.value, addrs))
    priorities = sorted({r[0] for r in result})
    assert priorities == list(range(len(priorities))), f"priorities have gaps: {priorities}"
    return result


def priorities(found: list[Row]) -> dict[str, int]:
    return {address: row[0] for row in found for address in row[3]}


def with_outliers(setting: LocalityLbSetting | None = None) -> TrafficPolicy:
    return TrafficPolicy(
        outlier_detection=OutlierDetection(),
        load_balancer=LoadBalancerSettings(locality_lb_setting=setting) if setting else None,
    )


def test_without_outlier_detection_every_locality_is_priority_0() -> None:
    assert set(priorities(rows(None, "r1/z1/s1")).values()) == {0}
    no_outliers = TrafficPolicy(load_balancer=LoadBalancerSettings(simple=SimpleLB.ROUND_ROBIN))
    assert set(priorities(rows(no_outliers, "r1/z1/s1")).values()) == {0}


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            "r1/z1/s1",
            {"10.1.1.1": 0, "10.1.1.2": 1, "10.1.2.1": 2, "10.2.1.1": 3, "10.3.1.1": 3},
        ),
        # no endpoint shares the client's subzone: priorities close up from 0
        (
            "r1/z1/s9",
            {"10.1.1.1": 0, "10.1.1.2": 0, "10.1.2.1": 1, "10.2.1.1": 2, "10.3.1.1": 2},
        ),
        ("r1/z2/s1", {"10.1.2.1": 0, "10.1.1.1": 1, "10.1.1.2": 1, "10.2.1.1": 2, "10.3.1.1": 2}),
        ("r2/z1/s1", {"10.2.1.1": 0, "10.1.1.1": 1, "10.1.1.2": 1, "10.1.2.1": 1, "10.3.1.1": 1}),
        # a client without a locality ranks every (located) endpoint alike
        ("", {"10.1.1.1": 0, "10.1.1.2": 0, "10.1.2.1": 0, "10.2.1.1": 0, "10.3.1.1": 0}),
    ],
)
def test_default_failover_orders_by_subzone_zone_region(
    client: str, expected: dict[str, int]
) -> None:
    assert priorities(rows(with_outliers(), client)) == expected


def test_failover_keeps_only_the_named_region_next() -> None:
    setting = LocalityLbSetting(failover=(LocalityFailover(from_="r1", to="r3"),))
    found = priorities(rows(with_outliers(setting), "r1/z1/s1"))
    assert found == {"10.1.1.1": 0, "10.1.1.2": 1, "10.1.2.1": 2, "10.3.1.1": 3, "10.2.1.1": 4}
    # a client in another region is not affected by r1's failover rule
    other = priorities(rows(with_outliers(setting), "r2/z1/s1"))
    assert other["10.3.1.1"] == other["10.1.1.1"] == 1


def test_failover_priority_splits_by_labels_in_order() -> None:
    endpoints = (
        endpoint("10.0.0.1", locality="r1/z1", labels={"net": "a", "rack": "x"}),
        endpoint("10.0.0.2", locality="r1/z1", labels={"net": "a", "rack": "y"}),
        endpoint("10.0.0.3", locality="r1/z1", labels={"net": "b", "rack": "x"}),
    )
    setting = LocalityLbSetting(failover_priority=("net", "rack"))
    found = rows(
        with_outliers(setting), "r1/z1", endpoints=endpoints, labels={"net": "a", "rack": "x"}
    )
    # one locality split into three priorities, each weighted by its endpoints
    assert found == [
        (0, "r1/z1", 1, ("10.0.0.1",)),
        (1, "r1/z1", 1, ("10.0.0.2",)),
        (2, "r1/z1", 1, ("10.0.0.3",)),
    ]


def test_failover_priority_value_override_and_topology_labels() -> None:
    endpoints = (
        endpoint("10.0.0.1", locality="r1/z1", labels={"version": "v2"}),
        endpoint("10.0.0.2", locality="r2/z1", labels={"version": "v1"}),
        endpoint("10.0.0.3", locality="r1/z2", labels={"version": "v1"}),
    )
    setting = LocalityLbSetting(failover_priority=("version=v1", "topology.kubernetes.io/region"))
    # the client has no LABELS: its region label comes from its locality
    found = priorities(rows(with_outliers(setting), "r1/z1", endpoints=endpoints))
    assert found == {"10.0.0.3": 0, "10.0.0.2": 1, "10.0.0.1": 2}


def test_failover_priority_with_failover_refines_each_tier_by_locality() -> None:
    endpoints = (
        endpoint("10.0.0.1", locality="r1/z1", labels={"net": "a"}),
        endpoint("10.0.0.2", locality="r2/z1", labels={"net": "a"}),
        endpoint("10.0.0.3", locality="r1/z1", labels={"net": "b"}),
        endpoint("10.0.0.4", locality="r3/z1", labels={"net": "b"}),
    )
    setting = LocalityLbSetting(
        failover_priority=("net",), failover=(LocalityFailover(from_="r1", to="r2"),)
    )
    found = priorities(
        rows(with_outliers(setting), "r1/z1", endpoints=endpoints, labels={"net": "a"})
    )
    assert found == {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 2, "10.0.0.4": 3}
    # failoverPriority alone does not order by locality (Istio)
    alone = LocalityLbSetting(failover_priority=("net",))
    found = priorities(
        rows(with_outliers(alone), "r1/z1", endpoints=endpoints, labels={"net": "a"})
    )
    assert found == {"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 1, "10.0.0.4": 1}


def test_disabled_locality_lb_keeps_priority_0() -> None:
    setting = LocalityLbSetting(enabled=False, failover=(LocalityFailover(from_="r1", to="r3"),))
    assert set(priorities(rows(with_outliers(setting), "r1/z1/s1")).values()) == {0}


DISTRIBUTE = LocalityLbSetting(
    distribute=(
        LocalityDistribute(from_="r1/z1/*", to={"r1/z1/*": 70, "r2/*": 20, "r3/z1/s1": 10}),
        LocalityDistribute(from_="r2/*", to={"r2/*": 100}),
    )
)


def distributing() -> TrafficPolicy:
    return TrafficPolicy(load_balancer=LoadBalancerSettings(locality_lb_setting=DISTRIBUTE))


def test_distribute_gives_weights_for_a_matching_client() -> None:
    found = rows(distributing(), "r1/z1/s2")
    # the two r1/z1 subzones share 70 (35 each); r1/z2 matches no `to` and gets nothing
    assert found == [
        (0, "r1/z1/s1", 35, ("10.1.1.1",)),
        (0, "r1/z1/s2", 35, ("10.1.1.2",)),
        (0, "r2/z1/s1", 20, ("10.2.1.1",)),
        (0, "r3/z1/s1", 10, ("10.3.1.1",)),
    ]


def test_distribute_splits_a_pattern_by_endpoint_weight_rounding_up() -> None:
    endpoints = (
        endpoint("10.0.0.1", locality="r2/z1", weight=2),
        endpoint("10.0.0.2", locality="r2/z2", weight=1),
    )
    found = rows(distributing(), "r2/z5", endpoints=endpoints)
    assert [(r[1], r[2]) for r in found] == [("r2/z1", 67), ("r2/z2", 34)]


def test_distribute_leaves_other_clients_alone_and_marks_locality_weighting() -> None:
    found = rows(distributing(), "r3/z1/s1")
    assert [(r[0], r[2]) for r in found] == [(0, 1)] * 5
    config = MeshConfig(
        service_entries=(service("svc", *SPREAD),),
        destination_rules=(rule("svc", distributing()),),
    )
    built = translate(config, (), NodeInfo(id="n"))[CLUSTER_TYPE_URL][CLUSTER]
    assert isinstance(built, cluster_pb2.Cluster)
    assert built.common_lb_config.HasField("locality_weighted_lb_config")


def test_distribute_wins_over_failover_even_with_outlier_detection() -> None:
    policy = TrafficPolicy(
        outlier_detection=OutlierDetection(),
        load_balancer=LoadBalancerSettings(locality_lb_setting=DISTRIBUTE),
    )
    assert {r[0] for r in rows(policy, "r1/z1/s1")} == {0}


def test_subset_policy_sets_failover_for_the_subset_cluster_only() -> None:
    endpoints = (
        endpoint("10.0.0.1", locality="r1/z1", labels={"v": "1"}),
        endpoint("10.0.0.2", locality="r2/z1", labels={"v": "1"}),
    )
    subset = Subset("v1", {"v": "1"}, with_outliers())
    whole = priorities(rows(None, "r1/z1", endpoints=endpoints, subsets=(subset,)))
    assert whole == {"10.0.0.1": 0, "10.0.0.2": 0}
    only = rows(
        None, "r1/z1", endpoints=endpoints, subsets=(subset,), cluster="outbound|50051|v1|svc"
    )
    assert priorities(only) == {"10.0.0.1": 0, "10.0.0.2": 1}


def test_clients_in_the_same_locality_get_identical_assignments() -> None:
    first = rows(with_outliers(), "r1/z2/s1")
    assert rows(with_outliers(), "r1/z2/s1") == first
