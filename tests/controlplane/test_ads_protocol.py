"""ADS (state of the world) protocol rules, against a real grpc.aio server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from controlplane.model import RegisteredWorkload
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
from controlplane.xds import XdsService
from controlplane.xds.stream import AdsStream
from tests.controlplane.ads_harness import RawAdsClient, mesh, resource_names, service_entry
from tests.support.raw_xds_stream import closing_streams

LDS, RDS, CDS, EDS = LISTENER_TYPE_URL, ROUTE_CONFIG_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
A_CLUSTER = "outbound|80||a"
B_CLUSTER = "outbound|80||b"

Connect = Callable[[str], Awaitable[RawAdsClient]]


@pytest.fixture
async def service() -> AsyncIterator[XdsService]:
    yield XdsService(debounce_s=0.1, max_debounce_s=1.0)


@pytest.fixture
async def connect(channel: grpc.aio.Channel) -> AsyncIterator[Connect]:
    async with closing_streams(lambda node_id: RawAdsClient(channel, node_id)) as open_client:
        yield open_client


def status_of(service: XdsService, node_id: str, type_url: str) -> dict[str, object]:
    for stream in service.clients_status():
        if stream["node_id"] == node_id:
            types = stream["types"]
            assert isinstance(types, dict)
            return dict(types[type_url])
    raise AssertionError(f"no stream for {node_id}")


async def settle(service: XdsService, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll the service's state until ``predicate`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("state did not settle in time")
        await asyncio.sleep(0.01)


async def test_initial_fetch_is_ordered_cds_eds_lds_rds(
    service: XdsService, connect: Connect
) -> None:
    client = await connect("n1")
    # Subscribe to everything while the mesh is still empty, in "wrong" order.
    client.send(RDS, ["a:80"])
    client.send(LDS)
    client.send(EDS, [A_CLUSTER])
    client.send(CDS)
    empty = {(r.type_url, len(r.resources)) for r in [await client.recv() for _ in range(4)]}
    assert empty == {(LDS, 0), (RDS, 0), (CDS, 0), (EDS, 0)}

    service.update(config=mesh(service_entry("a")))
    responses = [await client.recv() for _ in range(4)]
    assert [r.type_url for r in responses] == [CDS, EDS, LDS, RDS]
    assert [resource_names(r) for r in responses] == [[A_CLUSTER], [A_CLUSTER], ["a:80"], ["a:80"]]
    versions = service.snapshot_versions()["n1"]
    for response in responses:
        assert response.version_info == versions[response.type_url]
        assert response.nonce
    assert len({r.nonce for r in responses}) == 4


async def test_ack_is_recorded(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(CDS)
    response = await client.recv()
    assert resource_names(response) == [A_CLUSTER]
    client.ack(response)
    await settle(service, lambda: status_of(service, "n1", CDS)["acked_version"] is not None)
    status = status_of(service, "n1", CDS)
    assert status["acked_version"] == response.version_info
    assert status["last_nack"] is None
    assert status["wildcard"] is True
    await client.expect_silence(0.2)


async def test_nack_is_held_and_recorded(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(LDS)
    first = await client.recv()
    client.ack(first)
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    second = await client.recv()
    assert resource_names(second) == ["a:80", "b:80"]

    client.send(LDS, version=first.version_info, nonce=second.nonce, error="bad listener b:80")
    await client.expect_silence(0.3)  # the rejected version is not sent again
    status = status_of(service, "n1", LDS)
    nack = status["last_nack"]
    assert isinstance(nack, dict)
    assert nack["version"] == second.version_info
    assert nack["nonce"] == second.nonce
    assert nack["error"] == "bad listener b:80"
    assert nack["at"]
    assert status["acked_version"] == first.version_info

    # Only a new version goes out.
    service.update(config=mesh(service_entry("a")))
    third = await client.recv()
    assert third.version_info not in (second.version_info, "")
    assert resource_names(third) == ["a:80"]


async def test_stale_nonce_is_ignored(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    client = await connect("n1")
    client.send(EDS, [A_CLUSTER])
    first = await client.recv()
    client.send(EDS, [A_CLUSTER, B_CLUSTER], version=first.version_info, nonce=first.nonce)
    second = await client.recv()
    assert resource_names(second) == [A_CLUSTER, B_CLUSTER]

    # An answer to the first response arrives late: it must change nothing.
    client.send(EDS, [B_CLUSTER], version=first.version_info, nonce=first.nonce)
    client.send(EDS, [B_CLUSTER], nonce=first.nonce, error="late NACK")
    await client.expect_silence(0.3)
    status = status_of(service, "n1", EDS)
    assert status["subscribed"] == [A_CLUSTER, B_CLUSTER]
    assert status["last_nack"] is None


async def test_wildcard_and_named_subscriptions(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    wildcard = await connect("wild")
    wildcard.send(LDS)
    assert resource_names(await wildcard.recv()) == ["a:80", "b:80"]

    star = await connect("star")
    star.send(CDS, ["*"])
    assert resource_names(await star.recv()) == [A_CLUSTER, B_CLUSTER]

    named = await connect("named")
    named.send(LDS, ["b:80", "missing:80"])
    response = await named.recv()
    assert resource_names(response) == ["b:80"]
    assert status_of(service, "named", LDS)["wildcard"] is False

    # A later empty request from a named subscriber unsubscribes; it is no wildcard.
    named.send(LDS, version=response.version_info, nonce=response.nonce)
    await named.expect_silence(0.2)
    assert status_of(service, "named", LDS)["subscribed"] == []


async def test_new_lds_name_that_does_not_exist_is_answered(
    service: XdsService, connect: Connect
) -> None:
    """SotW LDS/CDS: absence from an answer is how a client learns a name does not
    exist, so adding a missing name to the subscription must get an answer."""
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(LDS, ["a:80"])
    first = await client.recv()
    client.ack(first, ["a:80"])
    client.send(LDS, ["a:80", "missing:80"], version=first.version_info, nonce=first.nonce)
    second = await client.recv()
    assert resource_names(second) == ["a:80"]
    assert second.version_info == first.version_info
    client.ack(second, ["a:80", "missing:80"])
    await client.expect_silence(0.2)


async def test_resource_that_appears_later_is_sent(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(RDS, ["b:80"])
    empty = await client.recv()
    assert resource_names(empty) == []
    client.ack(empty, ["b:80"])

    service.update(config=mesh(service_entry("a"), service_entry("b")))
    later = await client.recv()
    assert resource_names(later) == ["b:80"]


async def test_removed_resource_leaves_the_set(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    client = await connect("n1")
    client.send(CDS)
    first = await client.recv()
    assert resource_names(first) == [A_CLUSTER, B_CLUSTER]
    client.ack(first)

    service.update(config=mesh(service_entry("b")))
    second = await client.recv()
    assert resource_names(second) == [B_CLUSTER]
    client.ack(second)
    service.update(config=mesh())
    assert resource_names(await client.recv()) == []


async def test_new_node_gets_pending_config_at_once(service: XdsService, connect: Connect) -> None:
    """A node that connects while a rebuild is still debounced gets the newest config."""
    service.update(config=mesh(service_entry("a")))
    client = await connect("late")
    client.send(LDS)
    assert resource_names(await client.recv(timeout=0.09)) == ["a:80"]
    await client.expect_silence(0.3)  # and the debounced rebuild sends nothing new


async def test_burst_of_updates_makes_one_version(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(EDS, [A_CLUSTER])
    first = await client.recv()
    client.ack(first, [A_CLUSTER])
    before = service.snapshot_versions()["n1"][EDS]

    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(20):
        workload = RegisteredWorkload(
            id=f"w{i}", service="a", address=f"10.1.0.{i + 1}", ports={80: 8080}
        )
        service.update(workloads=[workload])
        await asyncio.sleep(0.0025)
    assert loop.time() - started < 0.09, "the burst must fit inside the debounce window"

    burst = await client.recv()
    assert burst.version_info != before
    addresses = str(burst.resources[0].value)
    assert "10.1.0.20" in addresses and "10.1.0.19" not in addresses
    await client.expect_silence(0.3)
    assert service.snapshot_versions()["n1"][EDS] == burst.version_info


async def test_unknown_type_is_recorded_not_answered(service: XdsService, connect: Connect) -> None:
    client = await connect("n1")
    odd = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    client.send(odd, ["cert"])
    await client.expect_silence(0.2)
    (stream,) = service.clients_status()
    assert stream["unknown_types"] == {odd: ["cert"]}
    client.send(LDS)  # the stream still works
    assert resource_names(await client.recv()) == []


async def test_first_request_without_node_is_refused(connect: Connect) -> None:
    client = await connect("")
    client.send(LDS, with_node=False)
    await client.wait_closed()
    assert client.error is not None
    assert client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node.id" in (client.error.details() or "")


async def test_sidecar_with_bad_metadata_is_refused_alone(
    service: XdsService, connect: Connect, channel: grpc.aio.Channel
) -> None:
    """A node's bad metadata fails its own stream, never the rebuild others share."""
    service.update(config=mesh(service_entry("a")))
    bad = RawAdsClient(channel, "bad-sidecar", {"mesh.proxy": "sidecar", "mesh.outbound_port": "x"})
    bad.send(LDS)
    await bad.wait_closed()
    assert bad.error is not None
    assert bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mesh.outbound_port" in (bad.error.details() or "")
    await bad.close()

    good = await connect("good")
    good.send(CDS)
    assert resource_names(await good.recv()) == [A_CLUSTER]
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    assert resource_names(await good.recv()) == [A_CLUSTER, B_CLUSTER]


async def test_status_lists_each_stream(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    one, two = await connect("same"), await connect("same")
    one.send(CDS)
    two.send(LDS, ["a:80"])
    await one.recv()
    await two.recv()
    status = service.clients_status()
    assert [s["node_id"] for s in status] == ["same", "same"]
    subscribed: set[str] = set()
    for stream in status:
        assert stream["peer"] and stream["connected_at"]
        types = stream["types"]
        assert isinstance(types, dict) and len(types) == 1
        for entry in types.values():
            assert entry["sent"] is not None
        subscribed.update(types)
    assert subscribed == {CDS, LDS}

    await one.close()
    await settle(service, lambda: len(service.clients_status()) == 1)
    assert "same" in service.snapshot_versions()  # the other stream still uses it
    await two.close()
    await settle(service, lambda: not service.snapshot_versions())


async def test_stop_ends_open_streams(service: XdsService, connect: Connect) -> None:
    client = await connect("n1")
    client.send(LDS)
    await client.recv()
    await service.stop()
    await client.wait_closed()
    assert client.error is None  # ended cleanly: the client reconnects elsewhere


async def test_a_later_bad_request_still_ends_its_stream_with_the_reason(
    service: XdsService, connect: Connect
) -> None:
    """Requests are answered as they are read: a refusal there still reaches the client."""
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(LDS)
    client.ack(await client.recv())
    client.send("", [])  # no type_url
    await client.wait_closed()
    assert client.error is not None
    assert client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type_url" in (client.error.details() or "")


async def test_a_failure_answering_a_request_ends_the_stream(
    service: XdsService, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while answering is not swallowed: the stream ends and the client is told."""
    service.update(config=mesh(service_entry("a")))
    client = await connect("n1")
    client.send(LDS)
    client.ack(await client.recv())

    def broken(stream: object, request: object) -> list[object]:
        raise RuntimeError("broken for the test")

    monkeypatch.setattr(AdsStream, "_on_request", broken)
    client.send(CDS)
    await client.wait_closed()
    assert client.error is not None
    assert client.error.code() == grpc.StatusCode.UNKNOWN
