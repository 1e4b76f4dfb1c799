"""Watchers: shared subscriptions, order, cancel/unsubscribe, misbehaving watchers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from meshlib.errors import XdsError
from meshlib.xds_client import LISTENER, ROUTE_CONFIG, CallbackWatcher, XdsClient
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory, bootstrap_for
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.recording import RecordingWatcher


def lds_request(names: list[str]) -> Any:
    return lambda r: r.type_url == b.LDS and list(r.resource_names) == names


def test_watchers_share_one_subscription(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    first, second = RecordingWatcher("first"), RecordingWatcher("second")
    client.watch(LISTENER, "svc:80", first)
    ads.wait_for_request(lds_request(["svc:80"]))
    nonce = ads.push(b.LDS, [b.listener("svc:80")], "1")
    first.wait_count(1)
    ads.wait_for_request(lambda r: r.response_nonce == nonce)
    sent = ads.request_count()

    client.watch(LISTENER, "svc:80", second)  # cached: told at once, no new request
    assert second.wait_count(1)[0][0] == "changed"
    client.watch(LISTENER, "other:80", RecordingWatcher())
    ads.wait_for_request(lds_request(["other:80", "svc:80"]), start=sent)
    assert ads.request_count() == sent + 1


def test_cancel_last_watcher_unsubscribes(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    one, two = RecordingWatcher("one"), RecordingWatcher("two")
    cancel_one = client.watch(LISTENER, "svc:80", one)
    cancel_two = client.watch(LISTENER, "svc:80", two)
    ads.wait_for_request(lds_request(["svc:80"]))
    ads.push(b.LDS, [b.listener("svc:80")], "1")
    one.wait_count(1)
    two.wait_count(1)

    cancel_one()
    cancel_one()  # harmless twice
    ads.push(b.LDS, [b.listener("svc:80", "rc-2")], "2")
    two.wait_count(2)
    assert one.kinds() == ["changed"]  # a cancelled watcher hears nothing more

    sent = ads.request_count()
    cancel_two()
    ads.wait_for_request(lds_request([]), start=sent)
    assert client.config_dump()["types"]["Listener"]["resources"] == []


def test_callbacks_in_order_on_one_thread(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(LISTENER, "svc:80", watcher)
    ads.wait_for_request(lds_request(["svc:80"]))
    for version in range(1, 6):
        ads.push(b.LDS, [b.listener("svc:80", f"rc-{version}")], str(version))
    ads.push(b.LDS, [], "6")  # deleted
    events = watcher.wait_count(6)
    assert [e[1].route_config_name for e in events[:5]] == [f"rc-{v}" for v in range(1, 6)]
    assert events[5][0] == "resource_error"
    assert watcher.threads == {"xds-watchers"}


def test_raising_and_slow_watchers_do_not_stop_the_client(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    client = make_client(ads.address)
    release = threading.Event()
    seen: list[str] = []

    def explode(resource: Any) -> None:
        seen.append(resource.name)
        raise RuntimeError("watcher bug")

    def slow(resource: Any) -> None:
        release.wait(5)

    client.watch(ROUTE_CONFIG, "rc", CallbackWatcher(explode))
    client.watch(ROUTE_CONFIG, "rc", CallbackWatcher(slow))
    after = RecordingWatcher("after")
    client.watch(ROUTE_CONFIG, "rc", after)
    ads.wait_for_request(lambda r: r.type_url == b.RDS)
    nonce = ads.push(b.RDS, [b.route_config("rc")], "1")
    # the ACK does not wait for watchers
    ads.wait_for_request(lambda r: r.type_url == b.RDS and r.response_nonce == nonce)
    assert after.events == []  # still queued behind the slow watcher
    release.set()
    after.wait_count(1)
    ads.push(b.RDS, [b.route_config("rc", "c2")], "2")
    after.wait_count(2)
    assert seen == ["rc", "rc"]


def test_close_is_idempotent_and_watch_after_close_fails(ads: FakeAds) -> None:
    with XdsClient(bootstrap_for(ads.address)) as client:
        client.watch(LISTENER, "svc:80", RecordingWatcher())
        ads.wait_for_request(lds_request(["svc:80"]))
    client.close()
    with pytest.raises(XdsError, match="closed"):
        client.watch(LISTENER, "svc:80", RecordingWatcher())
    assert client.config_dump()["types"]["Listener"]["resources"][0]["status"] == "REQUESTED"
    alive = {t.name for t in threading.enumerate()}
    assert not alive & {"xds-ads-stream", "xds-client", "xds-watchers"}
