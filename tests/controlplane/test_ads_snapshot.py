"""Snapshots: versions, and the consistency check that guards the cache."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import Resources, translate
from controlplane.translate.clusters import eds_cluster
from controlplane.translate.listeners import build_listener
from controlplane.translate.services import collect_services
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
from controlplane.xds import InconsistentSnapshotError
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.consistency import check_consistency
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.updater import SnapshotUpdater
from tests.controlplane.ads_harness import mesh, service_entry

NODE = NodeInfo(id="n1")


def _listener_without_route() -> listener_pb2.Listener:
    (service,) = collect_services(mesh(service_entry("a")), ())
    return build_listener(service)


def test_listener_without_its_route_is_refused() -> None:
    cache = SnapshotCache()
    good = Snapshot.from_resources(translate(mesh(service_entry("a")), (), NODE))
    cache.set("n1", good)
    bad = Snapshot.from_resources({LISTENER_TYPE_URL: {"a:80": _listener_without_route()}})
    with pytest.raises(InconsistentSnapshotError, match="listener 'a:80' needs route"):
        cache.set("n1", bad)
    assert cache.get("n1") is good


def test_eds_cluster_without_assignment_is_refused() -> None:
    cluster: cluster_pb2.Cluster = eds_cluster("outbound|80||a")
    bad = Snapshot.from_resources({CLUSTER_TYPE_URL: {cluster.name: cluster}})
    with pytest.raises(InconsistentSnapshotError, match="needs cluster load assignment"):
        SnapshotCache().set("n1", bad)


def test_updater_keeps_last_good_snapshot_when_refused() -> None:
    cache = SnapshotCache()
    broken = False

    def flaky(config: MeshConfig, workloads: object, node: NodeInfo) -> Resources:
        resources = dict(translate(config, (), node))
        if broken:
            resources[ROUTE_CONFIG_TYPE_URL] = {}
        return resources

    updater = SnapshotUpdater(cache, translate_fn=flaky)
    updater.set_inputs(config=mesh(service_entry("a")))
    updater.connect(NODE)
    good = cache.get("n1")
    assert good is not None
    broken = True
    updater.set_inputs(config=mesh(service_entry("a"), service_entry("b")))
    assert updater.rebuild() is False
    assert updater.last_error is not None and "needs route configuration" in updater.last_error
    assert cache.get("n1") is good


def test_versions_are_hashes_of_content() -> None:
    config = mesh(service_entry("a"), service_entry("b"))
    one = Snapshot.from_resources(translate(config, (), NODE))
    two = Snapshot.from_resources(translate(config, (), NODE))
    assert one.versions() == two.versions()
    workload = RegisteredWorkload(id="w", service="a", address="10.9.9.9", ports={80: 80})
    three = Snapshot.from_resources(translate(config, [workload], NODE))
    changed = {url for url in one.versions() if one.version(url) != three.version(url)}
    # A new serving workload also gets its inbound listener (LDS, named subscribers only).
    assert changed == {ENDPOINTS_TYPE_URL, LISTENER_TYPE_URL}


def test_a_snapshot_packed_from_a_previous_one_is_the_same_snapshot() -> None:
    """Messages kept by identity reuse their packing; changed, added and removed ones
    give what packing from scratch gives."""
    before = translate(mesh(service_entry("a"), service_entry("b")), (), NODE)
    previous = Snapshot.from_resources(before)
    after = translate(mesh(service_entry("a"), service_entry("c")), (), NODE)
    mixed = {
        url: {name: before[url].get(name, message) for name, message in messages.items()}
        for url, messages in after.items()
    }  # a's messages are previous's objects, c's are new, b's are gone
    for resources in (before, after, mixed):
        fresh = Snapshot.from_resources(resources)
        reused = Snapshot.from_resources(resources, previous)
        assert reused.versions() == fresh.versions()
        for url, kind in fresh.types.items():
            assert reused.get(url).resource_versions == kind.resource_versions
            assert {n: a.SerializeToString() for n, a in reused.get(url).resources.items()} == {
                n: a.SerializeToString() for n, a in kind.resources.items()
            }


def test_a_check_from_consistent_resources_still_finds_every_dangling_reference() -> None:
    """Only the changed listeners and clusters are read, unless a route configuration
    or load assignment went: then an unchanged one may dangle too."""
    good = dict(translate(mesh(service_entry("a")), (), NODE))
    rebuilt = _listener_without_route()  # a new object naming route "a:80"
    rebuilt.api_listener.api_listener.CopyFrom(
        good[LISTENER_TYPE_URL]["a:80"].api_listener.api_listener  # type: ignore[attr-defined]
    )
    renamed = {"b:80": good[ROUTE_CONFIG_TYPE_URL]["a:80"]}  # "a:80" is gone, "b:80" new
    changed = {**good, LISTENER_TYPE_URL: {"a:80": rebuilt}, ROUTE_CONFIG_TYPE_URL: renamed}
    with pytest.raises(InconsistentSnapshotError, match="listener 'a:80' needs route") as new:
        check_consistency(changed, good)
    with pytest.raises(InconsistentSnapshotError) as whole:
        check_consistency(changed)
    assert str(new.value) == str(whole.value)
    kept = {**good, LISTENER_TYPE_URL: {"a:80": rebuilt}}
    check_consistency(kept, good)  # the rebuilt listener's route is there
    (other,) = collect_services(mesh(service_entry("b")), ())
    added = {**good, LISTENER_TYPE_URL: {**good[LISTENER_TYPE_URL], "b:80": build_listener(other)}}
    with pytest.raises(InconsistentSnapshotError, match="listener 'b:80' needs route"):
        check_consistency(added, good)  # every route kept: only the new listener is read
    routes_gone = {**good, ROUTE_CONFIG_TYPE_URL: {}}  # the listener is the same object
    with pytest.raises(InconsistentSnapshotError, match="listener 'a:80' needs route"):
        check_consistency(routes_gone, good)
    assignments_gone = {**good, ENDPOINTS_TYPE_URL: {}}
    with pytest.raises(InconsistentSnapshotError, match="needs cluster load assignment"):
        check_consistency(assignments_gone, good)
    check_consistency(good, good)
