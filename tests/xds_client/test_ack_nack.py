"""Initial fetch, ACK, update, delete and NACK against a real (fake) ADS server."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshlib.errors import XdsResourceNotFound, XdsValidationError
from meshlib.xds_client import CLUSTER, LISTENER, ROUTE_CONFIG
from meshlib.xds_client.resources import ClusterResource, ListenerResource
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.recording import RecordingWatcher


def is_request(type_url: str, names: list[str], version: str, nonce: str) -> Any:
    def check(r: Any) -> bool:
        return bool(
            r.type_url == type_url
            and list(r.resource_names) == names
            and r.version_info == version
            and r.response_nonce == nonce
        )

    return check


def test_initial_fetch_sends_node_and_acks(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(LISTENER, "svc:80", watcher)

    first = ads.wait_for_request(is_request(b.LDS, ["svc:80"], "", ""))
    assert first.node.id == "test-node"
    assert first.node.cluster == "test"
    assert first.node.locality.zone == "z1"
    assert first.node.metadata.fields["team"].string_value == "mesh"
    assert first.node.user_agent_name == "meshlib"
    assert first.node.user_agent_version
    assert "xds.config.resource-in-sotw" in first.node.client_features

    nonce = ads.push(b.LDS, [b.listener("svc:80", "rc-1")], "1")
    watcher.wait_count(1)
    kind, resource = watcher.last()
    assert kind == "changed"
    assert resource == ListenerResource(name="svc:80", route_config_name="rc-1", route_config=None)

    ack = ads.wait_for_request(is_request(b.LDS, ["svc:80"], "1", nonce))
    assert not ack.HasField("node")  # the node goes on the first request of a stream only
    assert not ack.HasField("error_detail")

    dump = client.config_dump()
    json.dumps(dump)  # JSON-able as is
    assert dump["node_id"] == "test-node"
    assert dump["connected"] is True
    listeners = dump["types"]["Listener"]
    assert listeners["version"] == "1"
    assert listeners["last_nack"] is None
    (entry,) = listeners["resources"]
    assert (entry["name"], entry["version"], entry["status"]) == ("svc:80", "1", "ACKED")
    assert entry["resource"]["route_config_name"] == "rc-1"


def test_update_notifies_only_on_change(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(ROUTE_CONFIG, "rc", watcher)
    ads.wait_for_request(is_request(b.RDS, ["rc"], "", ""))
    ads.push(b.RDS, [b.route_config("rc", "c1")], "1")
    watcher.wait_count(1)
    ads.push(b.RDS, [b.route_config("rc", "c2")], "2")
    events = watcher.wait_count(2)
    assert events[1][1].cluster_names() == frozenset({"c2"})

    same = ads.push(b.RDS, [b.route_config("rc", "c2")], "3")
    ads.wait_for_request(is_request(b.RDS, ["rc"], "3", same))
    assert client.config_dump()["types"]["RouteConfiguration"]["version"] == "3"
    assert len(watcher.events) == 2  # an identical resource is not news


def test_listener_absent_from_sotw_is_deleted(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    kept, deleted = RecordingWatcher("kept"), RecordingWatcher("deleted")
    client.watch(LISTENER, "a:80", kept)
    client.watch(LISTENER, "b:80", deleted)
    ads.wait_for_request(lambda r: r.type_url == b.LDS and len(r.resource_names) == 2)
    ads.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "1")
    kept.wait_count(1)
    deleted.wait_count(1)

    ads.push(b.LDS, [b.listener("a:80")], "2")
    kind, error = deleted.wait_count(2)[1]
    assert kind == "resource_error"
    assert isinstance(error, XdsResourceNotFound)
    assert 'Listener "b:80"' in str(error)
    entries = {e["name"]: e for e in client.config_dump()["types"]["Listener"]["resources"]}
    assert entries["b:80"]["status"] == "DOES_NOT_EXIST"
    assert entries["b:80"]["resource"] is None
    assert entries["a:80"]["version"] == "2"
    assert kept.kinds() == ["changed"]

    ads.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "3")  # it comes back
    assert deleted.wait_count(3)[2][0] == "changed"


def test_route_config_absent_from_sotw_is_not_deleted(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(ROUTE_CONFIG, "rc-a", watcher)
    client.watch(ROUTE_CONFIG, "rc-b", RecordingWatcher())
    ads.wait_for_request(lambda r: r.type_url == b.RDS and len(r.resource_names) == 2)
    ads.push(b.RDS, [b.route_config("rc-a"), b.route_config("rc-b")], "1")
    watcher.wait_count(1)
    nonce = ads.push(b.RDS, [b.route_config("rc-b", "other")], "2")
    ads.wait_for_request(is_request(b.RDS, ["rc-a", "rc-b"], "2", nonce))
    assert watcher.kinds() == ["changed"]
    statuses = {
        e["name"]: e["status"]
        for e in client.config_dump()["types"]["RouteConfiguration"]["resources"]
    }
    assert statuses == {"rc-a": "ACKED", "rc-b": "ACKED"}


def bad_cluster(name: str) -> Any:
    msg = b.cluster(name)
    msg.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    return msg


def test_nack_keeps_last_good_and_applies_valid_siblings(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    client = make_client(ads.address)
    bad, good = RecordingWatcher("bad"), RecordingWatcher("good")
    client.watch(CLUSTER, "a", bad)
    client.watch(CLUSTER, "b", good)
    ads.wait_for_request(lambda r: r.type_url == b.CDS and len(r.resource_names) == 2)
    ads.push(b.CDS, [b.cluster("a"), b.cluster("b")], "1")
    bad.wait_count(1)
    good.wait_count(1)

    nonce = ads.push(b.CDS, [bad_cluster("a"), b.cluster("b", service_name="b-eds")], "2")
    nack = ads.wait_for_request(is_request(b.CDS, ["a", "b"], "1", nonce))
    assert nack.error_detail.code == 3  # INVALID_ARGUMENT
    assert 'Cluster "a": lb_policy CLUSTER_PROVIDED is not supported' in nack.error_detail.message

    kind, error = bad.wait_count(2)[1]
    assert kind == "ambient_error"
    assert isinstance(error, XdsValidationError)
    kind, updated = good.wait_count(2)[1]
    assert kind == "changed"
    assert isinstance(updated, ClusterResource)
    assert updated.eds_service_name == "b-eds"

    dump = client.config_dump()["types"]["Cluster"]
    assert dump["version"] == "1"
    assert dump["last_nack"]["version"] == "2"
    assert dump["last_nack"]["nonce"] == nonce
    assert "CLUSTER_PROVIDED" in dump["last_nack"]["error"]
    entries = {e["name"]: e for e in dump["resources"]}
    assert entries["a"]["status"] == "NACKED"
    assert entries["a"]["version"] == "1"
    assert entries["a"]["resource"]["lb_policy"] == "round_robin"  # last good kept
    assert "CLUSTER_PROVIDED" in entries["a"]["error"]
    assert (entries["b"]["status"], entries["b"]["version"]) == ("ACKED", "2")

    fixed = ads.push(b.CDS, [b.cluster("a"), b.cluster("b", service_name="b-eds")], "3")
    ack = ads.wait_for_request(is_request(b.CDS, ["a", "b"], "3", fixed))
    assert not ack.HasField("error_detail")


def test_invalid_first_version_is_a_resource_error(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(CLUSTER, "a", watcher)
    ads.wait_for_request(is_request(b.CDS, ["a"], "", ""))
    ads.push(b.CDS, [bad_cluster("a")], "1")
    kind, error = watcher.wait_count(1)[0]
    assert kind == "resource_error"
    assert isinstance(error, XdsValidationError)
    late = RecordingWatcher("late")
    client.watch(CLUSTER, "a", late)
    assert late.wait_count(1)[0][0] == "resource_error"


def test_unparsable_resource_is_nacked(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    client.watch(LISTENER, "svc:80", RecordingWatcher())
    ads.wait_for_request(is_request(b.LDS, ["svc:80"], "", ""))
    garbage = b.pack(b.listener("svc:80"))
    garbage.value = b"\xff\xff"
    wrong_type = b.pack(b.cluster("c"))
    nonce = ads.push(b.LDS, [], "1", raw=[garbage, wrong_type])
    nack = ads.wait_for_request(is_request(b.LDS, ["svc:80"], "", nonce))
    assert "Listener: cannot parse resource" in nack.error_detail.message
    assert "resource of type 'type.googleapis.com/envoy.config.cluster.v3.Cluster'" in (
        nack.error_detail.message
    )


def test_resource_wrapper_is_unwrapped(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(CLUSTER, "c1", watcher)
    ads.wait_for_request(is_request(b.CDS, ["c1"], "", ""))
    wrapped = discovery_pb2.Resource(name="c1", resource=b.pack(b.cluster("c1")))
    nonce = ads.push(b.CDS, [wrapped], "1")
    ads.wait_for_request(is_request(b.CDS, ["c1"], "1", nonce))
    assert watcher.wait_count(1)[0][1].name == "c1"


def test_ignore_resource_deletion_server_feature(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address, server={"server_features": ["ignore_resource_deletion"]})
    watcher = RecordingWatcher()
    client.watch(LISTENER, "svc:80", watcher)
    ads.wait_for_request(is_request(b.LDS, ["svc:80"], "", ""))
    ads.push(b.LDS, [b.listener("svc:80")], "1")
    watcher.wait_count(1)
    nonce = ads.push(b.LDS, [], "2")
    ads.wait_for_request(is_request(b.LDS, ["svc:80"], "2", nonce))
    assert watcher.kinds() == ["changed"]
    (entry,) = client.config_dump()["types"]["Listener"]["resources"]
    assert entry["status"] == "ACKED"
