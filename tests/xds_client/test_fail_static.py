"""Control plane restart: fail static while away, then resync."""

from __future__ import annotations

from meshlib.errors import XdsConnectionError
from meshlib.xds_client import CLUSTER, LISTENER
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.recording import RecordingWatcher


def test_restart_keeps_cache_then_resyncs(make_client: ClientFactory) -> None:
    first = FakeAds()
    servers = [first]
    try:
        client = make_client(first.address)
        lds, cds = RecordingWatcher("lds"), RecordingWatcher("cds")
        client.watch(LISTENER, "svc:80", lds)
        client.watch(CLUSTER, "c1", cds)
        first.wait_for_request(lambda r: r.type_url == b.CDS and list(r.resource_names) == ["c1"])
        first.push(b.LDS, [b.listener("svc:80")], "l1")
        first.push(b.CDS, [b.cluster("c1")], "c1")
        lds.wait_count(1)
        cds.wait_count(1)

        first.stop()
        for watcher in (lds, cds):
            kind, error = watcher.wait_count(2)[1]
            assert kind == "ambient_error"
            assert isinstance(error, XdsConnectionError)
            assert first.address in str(error)
        dump = client.config_dump()
        assert dump["connected"] is False
        assert [e["status"] for e in dump["types"]["Listener"]["resources"]] == ["ACKED"]
        assert dump["types"]["Cluster"]["resources"][0]["resource"]["name"] == "c1"

        second = FakeAds(port=first.port)
        servers.append(second)
        lds_again = second.wait_for_request(lambda r: r.type_url == b.LDS)
        cds_again = second.wait_for_request(lambda r: r.type_url == b.CDS)
        assert (list(lds_again.resource_names), lds_again.version_info) == (["svc:80"], "l1")
        assert (list(cds_again.resource_names), cds_again.version_info) == (["c1"], "c1")
        assert lds_again.response_nonce == cds_again.response_nonce == ""
        first_request = second.requests[0]
        assert first_request.node.id == "test-node"

        nonce = second.push(b.LDS, [b.listener("svc:80", "rc-new")], "l2")
        second.wait_for_request(
            lambda r: r.type_url == b.LDS and r.version_info == "l2" and r.response_nonce == nonce
        )
        kind, resource = lds.wait_count(3)[2]
        assert (kind, resource.route_config_name) == ("changed", "rc-new")
        # one ambient error per loss, however many reconnect attempts failed
        assert lds.kinds() == ["changed", "ambient_error", "changed"]
        assert cds.kinds() == ["changed", "ambient_error"]
        assert client.config_dump()["connected"] is True
    finally:
        for server in servers:
            server.stop()


def test_unreachable_server_reports_one_ambient_error(
    make_client: ClientFactory, refused_address: str
) -> None:
    client = make_client(refused_address)
    watcher = RecordingWatcher()
    client.watch(LISTENER, "svc:80", watcher)
    kind, error = watcher.wait_count(1)[0]
    assert kind == "ambient_error"
    assert isinstance(error, XdsConnectionError)


def test_a_watch_added_after_the_loss_was_reported_hears_of_it(
    make_client: ClientFactory, refused_address: str
) -> None:
    client = make_client(refused_address)
    first = RecordingWatcher("first")
    client.watch(LISTENER, "svc:80", first)
    first.wait_count(1)
    # The stream is known lost and already reported: later watches, named or not,
    # for a new name or one already watched, still hear it.
    late_same, late_other = RecordingWatcher("same"), RecordingWatcher("other")
    client.watch(LISTENER, "svc:80", late_same)
    client.watch(LISTENER, "other:80", late_other)
    for watcher in (late_same, late_other):
        kind, error = watcher.wait_count(1)[0]
        assert kind == "ambient_error"
        assert isinstance(error, XdsConnectionError)
