"""Wildcard watches (``watch_all``): "*" on the wire, the whole world to the watcher,
absence as a verdict for named watches only when the response provably is complete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from meshlib.errors import XdsConnectionError, XdsResourceNotFound, XdsValidationError
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.recording import RecordingWatcher
from tests.xds_client.test_ack_nack import bad_cluster


def names_are(type_url: str, names: list[str], **fields: str) -> Any:
    def check(r: Any) -> bool:
        return (
            r.type_url == type_url
            and list(r.resource_names) == names
            and all(getattr(r, k) == v for k, v in fields.items())
        )

    return check


def world(watcher: RecordingWatcher, index: int = -1) -> Mapping[str, Any]:
    kind, resources = watcher.events[index]
    assert kind == "changed"
    return dict(resources)


def test_wildcard_request_and_full_world(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    everything = RecordingWatcher("all")
    client.watch_all(LISTENER, everything)
    ads.wait_for_request(names_are(b.LDS, ["*"], response_nonce=""))
    nonce = ads.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "1")
    ads.wait_for_request(names_are(b.LDS, ["*"], version_info="1", response_nonce=nonce))
    everything.wait_count(1)
    assert sorted(world(everything)) == ["a:80", "b:80"]
    assert world(everything)["a:80"].name == "a:80"

    ads.push(b.LDS, [b.listener("b:80"), b.listener("c:80")], "2")  # a removed, c added
    everything.wait_count(2)
    assert sorted(world(everything)) == ["b:80", "c:80"]

    late = RecordingWatcher("late")  # a second wildcard watcher gets the cached world
    client.watch_all(LISTENER, late)
    late.wait_count(1)
    assert sorted(world(late)) == ["b:80", "c:80"]
    dump = client.config_dump()["types"]["Listener"]["wildcard"]
    assert dump == {"watchers": 2, "complete": True, "version": "2", "names": ["b:80", "c:80"]}


def test_only_lds_and_cds_can_be_wildcard(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    for rtype in (ROUTE_CONFIG, ENDPOINTS):
        with pytest.raises(ValueError, match="wildcard watches need"):
            client.watch_all(rtype, RecordingWatcher())
    client.watch_all(CLUSTER, RecordingWatcher())
    ads.wait_for_request(names_are(b.CDS, ["*"]))


def test_named_and_wildcard_together(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address, resource_timeout_s=30)
    everything, present, missing = (RecordingWatcher(n) for n in ("all", "present", "missing"))
    client.watch_all(LISTENER, everything)
    client.watch(LISTENER, "a:80", present)
    client.watch(LISTENER, "nope:80", missing)
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80", "nope:80"]))
    ads.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "1")
    assert present.wait_count(1)[0][0] == "changed"
    kind, error = missing.wait_count(1)[0]  # at once, not after the 30 s timer
    assert kind == "resource_error"
    assert isinstance(error, XdsResourceNotFound)
    everything.wait_count(1)

    # A named watch started later is answered from the known world at once.
    known, unknown = RecordingWatcher("known"), RecordingWatcher("unknown")
    client.watch(LISTENER, "b:80", known)
    client.watch(LISTENER, "gone:80", unknown)
    assert known.wait_count(1)[0][0] == "changed"
    assert unknown.wait_count(1)[0][0] == "resource_error"
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80", "b:80", "gone:80", "nope:80"]))
    entries = client.config_dump()["types"]["Listener"]["resources"]
    statuses = {e["name"]: e["status"] for e in entries}
    assert statuses == {
        "a:80": "ACKED",
        "b:80": "ACKED",
        "gone:80": "DOES_NOT_EXIST",
        "nope:80": "DOES_NOT_EXIST",
    }


def test_nack_keeps_last_good_in_the_world(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    everything = RecordingWatcher("all")
    client.watch_all(CLUSTER, everything)
    ads.wait_for_request(names_are(b.CDS, ["*"]))
    ads.push(b.CDS, [b.cluster("a"), b.cluster("b")], "1")
    everything.wait_count(1)
    nonce = ads.push(b.CDS, [bad_cluster("a"), bad_cluster("new"), b.cluster("c")], "2")
    nack = ads.wait_for_request(names_are(b.CDS, ["*"], version_info="1", response_nonce=nonce))
    assert "CLUSTER_PROVIDED" in nack.error_detail.message
    events = everything.wait_count(3)
    assert sorted(world(everything, 1)) == ["a", "c"]  # b deleted; a's last good kept
    assert world(everything, 1)["a"].lb_policy == "round_robin"
    kind, error = events[2]
    assert kind == "ambient_error"
    assert isinstance(error, XdsValidationError)


def test_cancel_last_wildcard_drops_star(ads: FakeAds, make_client: ClientFactory) -> None:
    client = make_client(ads.address)
    first, second = RecordingWatcher("first"), RecordingWatcher("second")
    cancel_first = client.watch_all(LISTENER, first)
    cancel_second = client.watch_all(LISTENER, second)
    client.watch(LISTENER, "a:80", RecordingWatcher("named"))
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80"]))
    ads.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "1")
    first.wait_count(1)
    second.wait_count(1)
    cancel_first()
    cancel_first()  # twice is harmless
    ads.push(b.LDS, [b.listener("a:80")], "2")
    second.wait_count(2)
    start = ads.request_count()
    cancel_second()
    ads.wait_for_request(names_are(b.LDS, ["a:80"]), start=start)
    assert len(first.events) == 1
    assert "wildcard" not in client.config_dump()["types"]["Listener"]


def test_reconnect_requests_star_again(make_client: ClientFactory) -> None:
    first = FakeAds()
    servers = [first]
    try:
        client = make_client(first.address, resource_timeout_s=30)
        everything = RecordingWatcher("all")
        client.watch_all(LISTENER, everything)
        first.wait_for_request(names_are(b.LDS, ["*"]))
        first.push(b.LDS, [b.listener("a:80")], "1")
        everything.wait_count(1)
        first.stop()
        kind, error = everything.wait_count(2)[1]
        assert kind == "ambient_error"
        assert isinstance(error, XdsConnectionError)

        second = FakeAds(port=first.port)
        servers.append(second)
        again = second.wait_for_request(names_are(b.LDS, ["*"], response_nonce=""))
        assert again.version_info == "1"
        second.push(b.LDS, [b.listener("a:80"), b.listener("b:80")], "2")
        everything.wait_count(3)
        assert sorted(world(everything)) == ["a:80", "b:80"]
    finally:
        for server in servers:
            server.stop()


def test_in_flight_response_from_before_the_wildcard_is_not_trusted(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    """Named LDS first; "*" added mid-stream. A response the server computed before it
    saw "*" lists only named resources: it must not delete or deny anything else."""
    client = make_client(ads.address, resource_timeout_s=30)
    a, b_watch = RecordingWatcher("a"), RecordingWatcher("b")
    client.watch(LISTENER, "a:80", a)
    client.watch(LISTENER, "b:80", b_watch)
    ads.wait_for_request(names_are(b.LDS, ["a:80", "b:80"]))
    first = ads.push(b.LDS, [b.listener("a:80")], "1")
    a.wait_count(1)
    ads.wait_for_request(names_are(b.LDS, ["a:80", "b:80"], response_nonce=first))

    everything = RecordingWatcher("all")
    client.watch_all(LISTENER, everything)
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80", "b:80"], response_nonce=first))
    # In flight: computed under the named-only subscription (b does not exist yet there,
    # and the server knows nothing else was asked for).
    stale = ads.push(b.LDS, [b.listener("a:80")], "2")
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80", "b:80"], response_nonce=stale))
    assert b_watch.kinds() == []  # no verdict on b from a response that may predate "*"
    assert everything.kinds() == []  # not the whole world
    assert client.config_dump()["types"]["Listener"]["wildcard"]["complete"] is False

    # Proof by content: "z:80" was never named, so this response was computed under "*".
    ads.push(b.LDS, [b.listener("a:80"), b.listener("z:80")], "3")
    everything.wait_count(1)
    assert sorted(world(everything)) == ["a:80", "z:80"]
    kind, error = b_watch.wait_count(1)[0]
    assert (kind, type(error)) == ("resource_error", XdsResourceNotFound)
    assert a.kinds() == ["changed"]  # unchanged resource: no new notification


def test_only_named_resources_mid_stream_wait_for_proof(
    ads: FakeAds, make_client: ClientFactory
) -> None:
    """Mid-stream "*" and a response holding only named resources: it cannot be told
    apart from an in-flight one, so the timer (not absence) decides never-received names."""
    client = make_client(ads.address, resource_timeout_s=0.5)
    a, b_watch = RecordingWatcher("a"), RecordingWatcher("b")
    client.watch(LISTENER, "a:80", a)
    client.watch(LISTENER, "b:80", b_watch)
    ads.wait_for_request(names_are(b.LDS, ["a:80", "b:80"]))
    first = ads.push(b.LDS, [b.listener("a:80")], "1")
    a.wait_count(1)
    everything = RecordingWatcher("all")
    client.watch_all(LISTENER, everything)
    ads.wait_for_request(names_are(b.LDS, ["*", "a:80", "b:80"], response_nonce=first))
    ads.push(b.LDS, [b.listener("a:80")], "2")
    _kind, error = b_watch.wait_count(1, timeout_s=5)[0]  # the 0.5 s timer
    assert "no data 0.5s after it was requested" in str(error)
    assert everything.kinds() == []
