"""Retries avoid the hosts they already tried, for every policy."""

from __future__ import annotations

import pytest

from meshlib.balancing.picker import PickContext
from meshlib.balancing.policy import available_policies
from meshlib.errors import NoHealthyEndpointError
from meshlib.routing.snapshot import build_cluster_state
from meshlib.xds_client.resources import ClusterResource, ClusterType
from tests.balancing.builders import cluster, eds, ep, loc

POLICIES = ["round_robin", "least_request", "random", "ring_hash", "maglev", "pick_first"]


def test_every_policy_is_registered() -> None:
    assert set(POLICIES) <= set(available_policies())


@pytest.mark.parametrize("policy", POLICIES)
def test_excluded_hosts_are_avoided_when_another_exists(policy: str) -> None:
    state = build_cluster_state(cluster(policy), eds(loc("a", [ep(1), ep(2), ep(3)])))
    for key in range(200):
        first = state.picker.pick(PickContext(request_hash=key * 7919))
        excluded = frozenset({first.authority})
        second = state.picker.pick(PickContext(request_hash=key * 7919, excluded=excluded))
        assert second.authority not in excluded
        both = excluded | {second.authority}
        third = state.picker.pick(PickContext(request_hash=key * 7919, excluded=both))
        assert third.authority not in both


@pytest.mark.parametrize("policy", POLICIES)
def test_when_everything_is_excluded_a_host_is_still_picked(policy: str) -> None:
    state = build_cluster_state(cluster(policy), eds(loc("a", [ep(1), ep(2)])))
    every = frozenset({"10.0.0.1:1", "10.0.0.1:2"})
    assert state.picker.pick(PickContext(excluded=every)).port in (1, 2)


def test_same_hash_same_host_for_hash_policies() -> None:
    for policy in ("ring_hash", "maglev"):
        state = build_cluster_state(cluster(policy), eds(loc("a", [ep(p) for p in range(1, 9)])))
        for key in (1, 2**40, 2**63 + 5):
            ctx = PickContext(request_hash=key)
            assert len({state.picker.pick(ctx).port for _ in range(20)}) == 1


def test_cluster_state_errors_name_the_cluster() -> None:
    unknown = build_cluster_state(cluster("nope"), eds(loc("a", [ep(1)])))
    with pytest.raises(NoHealthyEndpointError, match=r"cluster 'c'.*nope"):
        unknown.picker.pick()
    dns = ClusterResource("d", ClusterType.LOGICAL_DNS, "d", dns_host="svc.local", dns_port=81)
    assert build_cluster_state(dns, None).picker.pick().authority == "svc.local:81"
