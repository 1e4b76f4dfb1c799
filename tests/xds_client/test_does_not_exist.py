"""The does-not-exist timer: a subscribed name with no data in time is reported gone."""

from __future__ import annotations

import time

from meshlib.errors import XdsResourceNotFound
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.recording import RecordingWatcher


def test_timer_reports_missing_resource(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address, resource_timeout_s=0.3)
    watcher = RecordingWatcher()
    started = time.monotonic()
    client.watch(ENDPOINTS, "missing", watcher)
    kind, error = watcher.wait_count(1)[0]
    assert time.monotonic() - started >= 0.3
    assert kind == "resource_error"
    assert isinstance(error, XdsResourceNotFound)
    assert 'ClusterLoadAssignment "missing" does not exist' in str(error)
    (entry,) = client.config_dump()["types"]["ClusterLoadAssignment"]["resources"]
    assert entry["status"] == "DOES_NOT_EXIST"

    ads.push(b.EDS, [b.cluster_load_assignment("missing")], "1")  # it appears later
    assert watcher.wait_count(2)[1][0] == "changed"


def test_timer_does_not_fire_when_data_arrives(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address, resource_timeout_s=1.0)
    present, absent = RecordingWatcher("present"), RecordingWatcher("absent")
    client.watch(CLUSTER, "c1", present)
    client.watch(CLUSTER, "c2", absent)
    ads.wait_for_request(lambda r: r.type_url == b.CDS and len(r.resource_names) == 2)
    ads.push(b.CDS, [b.cluster("c1")], "1")
    absent.wait_count(1)  # the timer of c2 fired...
    assert present.kinds() == ["changed"]  # ...but not that of c1


def test_timer_does_not_run_while_disconnected(
    make_client: ClientFactory, refused_address: str
) -> None:
    client = make_client(refused_address, resource_timeout_s=0.2)
    watcher = RecordingWatcher()
    client.watch(LISTENER, "svc:80", watcher)
    watcher.wait_count(1)
    deadline = time.monotonic() + 0.8  # four timeouts: no stream is live, so no verdict
    while time.monotonic() < deadline:
        assert watcher.kinds() == ["ambient_error"]
        time.sleep(0.05)
