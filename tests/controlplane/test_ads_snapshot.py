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
