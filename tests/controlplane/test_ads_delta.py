"""Delta (incremental) ADS protocol rules, against a real grpc.aio server and a raw
Delta client: per-resource versions, subscribe / unsubscribe, wildcard,
removed_resources, initial_resource_versions on reconnect, ACK / NACK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.model import MeshConfig
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPSettings,
    TrafficPolicy,
)
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
from controlplane.xds import XdsService
from tests.controlplane.ads_harness import RawAdsClient, mesh, resource_names, service_entry
from tests.controlplane.cluster_cases import rule
from tests.controlplane.delta_harness import RawDeltaClient, names, versions
from tests.controlplane.polling import eventually
from tests.controlplane.route_cases import config, to, vs
from tests.support.raw_xds_stream import closing_streams

LDS, RDS, CDS, EDS = LISTENER_TYPE_URL, ROUTE_CONFIG_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
A, B, C = "outbound|80||a", "outbound|80||b", "outbound|80||c"

Connect = Callable[[str], Awaitable[RawDeltaClient]]


@pytest.fixture
async def service() -> AsyncIterator[XdsService]:
    yield XdsService(debounce_s=0.01, max_debounce_s=0.1)


@pytest.fixture
async def connect(channel: grpc.aio.Channel) -> AsyncIterator[Connect]:
    async with closing_streams(lambda node_id: RawDeltaClient(channel, node_id)) as open_client:
        yield open_client


def abc() -> MeshConfig:
    return mesh(service_entry("a"), service_entry("b"), service_entry("c"))


def with_pool(config: MeshConfig, host: str, max_requests: int) -> MeshConfig:
    """``config`` with ``host``'s cluster changed (its endpoints stay the same)."""
    pool = ConnectionPoolSettings(http=HTTPSettings(http2_max_requests=max_requests))
    policy = TrafficPolicy(connection_pool=pool)
    return MeshConfig(
        service_entries=config.service_entries, destination_rules=(rule(host, policy),)
    )


def stream_of(service: XdsService, node_id: str) -> dict[str, object]:
    for stream in service.clients_status():
        if stream["node_id"] == node_id:
            return stream
    raise AssertionError(f"no stream for {node_id}")


def type_status(service: XdsService, node_id: str, short: str) -> str:
    status = stream_of(service, node_id)["status"]
    assert isinstance(status, dict)
    return str(status[short])


async def test_wildcard_sends_every_cluster_with_its_own_version(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=abc())
    client = await connect("w")
    client.send(CDS)  # first request naming nothing: legacy wildcard
    response = await client.recv_acked()
    assert response.type_url == CDS
    assert names(response) == [A, B, C]
    assert len(set(versions(response).values())) == 3
    assert response.system_version_info == service.snapshot_versions()["w"][CDS]
    assert list(response.removed_resources) == []
    await eventually(lambda: type_status(service, "w", "CDS") == "SYNCED", what="CDS SYNCED")
    stream = stream_of(service, "w")
    assert stream["xds"] == "delta"
    detail = service.client_detail("w")
    assert detail is not None
    assert detail["types"]["CDS"]["resources"] == [A, B, C]  # type: ignore[index]

    explicit = await connect("star")
    explicit.send(CDS, ["*"])
    assert names(await explicit.recv()) == [A, B, C]


async def test_a_changed_cluster_sends_exactly_that_cluster_and_its_endpoints(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=abc())
    client = await connect("one")
    client.send(CDS)
    first = await client.recv_acked()
    client.send(EDS, [A, B, C])
    assert sorted(names(await client.recv_acked())) == [A, B, C]
    await client.expect_silence()

    service.update(config=with_pool(abc(), "b", 40))
    cds = await client.recv_acked()
    assert cds.type_url == CDS
    assert names(cds) == [B]
    assert list(cds.removed_resources) == []
    assert versions(cds)[B] != versions(first)[B]
    # Envoy re-creates b and warms it: it needs b's assignment again (unchanged).
    eds = await client.recv_acked()
    assert (eds.type_url, names(eds), list(eds.removed_resources)) == (EDS, [B], [])
    await client.expect_silence()


async def test_adds_and_removals(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("adds")
    client.send(CDS)
    assert names(await client.recv_acked()) == [A]
    client.send(EDS, [A, B])  # b does not exist yet: the server says so
    eds = await client.recv_acked()
    assert (names(eds), list(eds.removed_resources)) == ([A], [B])
    await client.expect_silence()

    service.update(config=mesh(service_entry("a"), service_entry("b")))
    cds = await client.recv_acked()
    assert (names(cds), list(cds.removed_resources)) == ([B], [])
    eds = await client.recv_acked()  # b springs into existence
    assert (eds.type_url, names(eds)) == (EDS, [B])
    await client.expect_silence()

    service.update(config=mesh(service_entry("b")))
    cds = await client.recv_acked()
    assert (cds.type_url, names(cds), list(cds.removed_resources)) == (CDS, [], [A])
    eds = await client.recv_acked()
    assert (eds.type_url, names(eds), list(eds.removed_resources)) == (EDS, [], [A])
    await client.expect_silence()


async def test_reconnect_with_initial_versions_gets_only_the_difference(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=abc())
    before = await connect("re")
    before.send(CDS)
    clusters = versions(await before.recv_acked())
    before.send(EDS, [A, B, C])
    assignments = versions(await before.recv_acked())
    await before.close()

    # Meanwhile: b's cluster changes, c goes away, d appears.
    changed = with_pool(mesh(service_entry("a"), service_entry("b"), service_entry("d")), "b", 7)
    service.update(config=changed)
    await eventually(lambda: "re" not in service.snapshot_versions(), what="old stream gone")

    after = await connect("re")
    after.send(CDS, initial_versions=clusters)
    cds = await after.recv_acked()
    assert (names(cds), list(cds.removed_resources)) == ([B, "outbound|80||d"], [C])
    after.send(EDS, [A, B, "outbound|80||d"], initial_versions=assignments)
    eds = await after.recv_acked()
    # a's and b's assignments are unchanged: only d's is new; b's cluster is new,
    # so its assignment is owed as well (see .dependents).
    assert sorted(names(eds)) == [B, "outbound|80||d"]
    assert list(eds.removed_resources) == []
    await after.expect_silence()


async def test_a_nack_keeps_the_last_good_and_shows_nacked(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=abc())
    client = await connect("picky")
    client.send(CDS)
    await client.recv_acked()
    service.update(config=with_pool(abc(), "a", 3))
    bad = await client.recv()
    client.nack(bad, "cluster a: max_requests 3 is too few")
    await eventually(lambda: type_status(service, "picky", "CDS") == "NACKED", what="NACKED")
    cds = stream_of(service, "picky")["types"][CDS]  # type: ignore[index]
    assert cds["last_nack"]["error"] == "cluster a: max_requests 3 is too few"
    assert cds["last_nack"]["nonce"] == bad.nonce
    assert cds["acked_version"] != bad.system_version_info  # the last good one
    await client.expect_silence()  # the refused version is held, not resent

    # Another cluster changes and is ACKed: a is still refused, so CDS stays NACKED.
    both = with_pool(abc(), "a", 3)
    both = MeshConfig(
        service_entries=both.service_entries,
        destination_rules=(*both.destination_rules, *with_pool(abc(), "b", 9).destination_rules),
    )
    service.update(config=both)
    other = await client.recv_acked()
    assert names(other) == [B]
    await eventually(
        lambda: stream_of(service, "picky")["types"][CDS]["acked_nonce"] == other.nonce
    )  # type: ignore[index]
    assert type_status(service, "picky", "CDS") == "NACKED"

    fix = both.destination_rules[1:]  # a without its refused pool: a fix goes out
    service.update(config=MeshConfig(service_entries=both.service_entries, destination_rules=fix))
    fixed = await client.recv_acked()
    assert names(fixed) == [A]
    await eventually(lambda: type_status(service, "picky", "CDS") == "SYNCED", what="SYNCED")


async def test_unsubscribe_stops_pushes(service: XdsService, connect: Connect) -> None:
    service.update(config=abc())
    client = await connect("unsub")
    client.send(EDS, [A, B])
    assert sorted(names(await client.recv_acked())) == [A, B]
    client.send(EDS, unsubscribe=[A])
    await client.expect_silence()  # a bare unsubscribe needs no answer
    service.update(
        config=mesh(service_entry("a", addresses=("10.0.0.9",)), *abc().service_entries[1:])
    )
    await client.expect_silence()
    service.update(config=mesh(service_entry("b", addresses=("10.0.0.8",)), service_entry("a")))
    eds = await client.recv_acked()
    assert names(eds) == [B]


async def test_resubscribing_resends_even_unchanged(service: XdsService, connect: Connect) -> None:
    service.update(config=abc())
    client = await connect("again")
    client.send(EDS, [A])
    await client.recv_acked()
    client.send(EDS, [A])  # the client may have forgotten it: it must get it again
    assert names(await client.recv_acked()) == [A]


async def test_unsubscribing_a_name_under_a_wildcard_is_answered(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("both")
    client.send(CDS, ["*", A, B])
    cds = await client.recv_acked()
    assert (names(cds), list(cds.removed_resources)) == ([A], [B])
    client.send(CDS, unsubscribe=[A, B])
    answer = await client.recv_acked()  # a is in the wildcard: resent; b is not: removed
    assert (names(answer), list(answer.removed_resources)) == ([A], [B])
    client.send(CDS, unsubscribe=["*"])
    await client.expect_silence()
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    await client.expect_silence()


async def test_a_stale_nonce_still_changes_the_subscription(
    service: XdsService, connect: Connect
) -> None:
    service.update(config=abc())
    client = await connect("stale")
    client.send(EDS, [A])
    await client.recv_acked()
    client.send(EDS, [B], nonce="999")  # answers nothing we sent; the subscribe counts
    assert names(await client.recv_acked()) == [B]
    assert type_status(service, "stale", "EDS") in {"SYNCED", "STALE"}


async def test_delta_and_state_of_the_world_clients_share_the_server(
    service: XdsService, connect: Connect, channel: grpc.aio.Channel
) -> None:
    service.update(config=mesh(service_entry("a")))
    delta = await connect("delta")
    delta.send(CDS)
    await delta.recv_acked()
    sotw = RawAdsClient(channel, "sotw")
    try:
        sotw.send(CDS)
        assert resource_names(await sotw.recv()) == [A]
        service.update(config=mesh(service_entry("a"), service_entry("b")))
        assert resource_names(await sotw.recv()) == [A, B]  # the whole state
        assert names(await delta.recv_acked()) == [B]  # only the change
        kinds = {s["node_id"]: s["xds"] for s in service.clients_status()}
        assert kinds == {"delta": "delta", "sotw": "sotw"}
    finally:
        await sotw.close()


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (discovery_pb2.DeltaDiscoveryRequest(type_url=CDS), "node.id"),
        (discovery_pb2.DeltaDiscoveryRequest(node={"id": "n"}), "type_url"),
        (
            discovery_pb2.DeltaDiscoveryRequest(
                node={"id": "n"}, type_url=CDS, resource_locators_subscribe=[{"name": "x"}]
            ),
            "resource_locators",
        ),
    ],
)
async def test_protocol_errors_end_the_stream_with_invalid_argument(
    channel: grpc.aio.Channel, request_: discovery_pb2.DeltaDiscoveryRequest, detail: str
) -> None:
    client = RawDeltaClient(channel, "")
    try:
        client.send_request(request_)
        await client.wait_closed()
        assert client.error is not None
        assert client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert detail in (client.error.details() or "")
    finally:
        await client.close()


async def test_unknown_types_are_ignored_and_shown(service: XdsService, connect: Connect) -> None:
    service.update(config=mesh(service_entry("a")))
    client = await connect("odd")
    client.send("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", ["x"])
    await client.expect_silence()
    client.send(CDS)
    assert names(await client.recv_acked()) == [A]
    unknown = stream_of(service, "odd")["unknown_types"]
    assert unknown == {
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": ["x"]
    }


async def test_each_delta_node_gets_the_routes_of_its_labels(
    channel: grpc.aio.Channel, service: XdsService
) -> None:
    """Per-node snapshots (sourceLabels routing) reach Delta streams as SotW ones."""
    canary = HTTPRoute(
        name="canary",
        match=(HTTPMatchRequest(source_labels={"version": "canary"}),),
        route=(to("sessions", port=8080),),
    )
    service.update(config=config(vs(canary, HTTPRoute(name="rest", route=(to("attendees"),)))))

    async def routes(node_id: str, labels: dict[str, str]) -> list[str]:
        client = RawDeltaClient(channel, node_id, {"LABELS": labels})
        try:
            client.send(RDS, ["attendees:8080"])
            response = await client.recv()
        finally:
            await client.close()
        table = route_pb2.RouteConfiguration()
        assert response.resources[0].resource.Unpack(table)
        return [route.name for route in table.virtual_hosts[0].routes]

    assert await routes("canary-1", {"version": "canary"}) == ["canary", "rest"]
    assert await routes("stable-1", {"version": "v1"}) == ["rest"]


async def test_legacy_wildcard_follows_the_spec_example(
    service: XdsService, connect: Connect
) -> None:
    """The xDS spec's incremental example: {} -> wildcard; +A keeps it; -* leaves A;
    -A leaves nothing (not the wildcard again)."""
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    client = await connect("legacy")
    client.send(CDS)
    assert names(await client.recv_acked()) == [A, B]
    client.send(CDS, [A])
    assert names(await client.recv_acked()) == [A]  # subscribed explicitly: sent again
    client.send(CDS, unsubscribe=["*"])
    await client.expect_silence()
    service.update(config=mesh(service_entry("a"), service_entry("b"), service_entry("c")))
    await client.expect_silence()  # c is only in the wildcard, which is gone
    client.send(CDS, unsubscribe=[A])
    await client.expect_silence()
    service.update(config=mesh(service_entry("a", addresses=("10.0.0.7",))))
    await client.expect_silence()
    stream = stream_of(service, "legacy")["types"][CDS]  # type: ignore[index]
    assert (stream["wildcard"], stream["subscribed"]) == (False, [])
