"""A re-request for resources the client re-created is answered, even at the same version.

After a changed cluster goes out, Envoy warms the new cluster and asks for its
ClusterLoadAssignment again with the version and nonce it already has. That is
not a plain ACK: the server must send the assignment (the real-Envoy check is
``test_envoy_cluster_warming``). Every other repeat stays unanswered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.model import MeshConfig
from controlplane.traffic_model import ConnectionPoolSettings, HTTPSettings, TrafficPolicy
from controlplane.translate.typeurls import CLUSTER_TYPE_URL as CDS
from controlplane.translate.typeurls import ENDPOINTS_TYPE_URL as EDS
from controlplane.xds import XdsService
from tests.controlplane.ads_harness import RawAdsClient, resource_names
from tests.controlplane.cluster_cases import endpoint, rule, service
from tests.support.xds_service import xds_channel

A, B = "outbound|50051||a", "outbound|50051||b"


def mesh(a_max_requests: int) -> MeshConfig:
    """Services a and b; only a's cluster changes with ``a_max_requests``."""
    pool = ConnectionPoolSettings(http=HTTPSettings(http2_max_requests=a_max_requests))
    return MeshConfig(
        service_entries=(
            service("a", endpoint("10.0.0.1", port=8080)),
            service("b", endpoint("10.0.0.2", port=8080)),
        ),
        destination_rules=(rule("a", TrafficPolicy(connection_pool=pool)),),
    )


@pytest.fixture
async def xds() -> AsyncIterator[tuple[XdsService, grpc.aio.Channel]]:
    service_ = XdsService(debounce_s=0.01)
    service_.update(config=mesh(25))
    async with xds_channel(service_) as channel:
        yield service_, channel


async def subscribed(
    channel: grpc.aio.Channel, eds_names: list[str]
) -> tuple[RawAdsClient, discovery_pb2.DiscoveryResponse]:
    """A client with every cluster and ``eds_names`` ACKed; returns its EDS response."""
    client = RawAdsClient(channel, "warming")
    client.send(CDS)
    client.ack(await client.recv())
    client.send(EDS, eds_names)
    eds = await client.recv()
    assert sorted(resource_names(eds)) == eds_names
    client.ack(eds, eds_names)
    await client.expect_silence(0.2)
    return client, eds


async def test_eds_re_request_after_its_cluster_changed_is_answered(
    xds: tuple[XdsService, grpc.aio.Channel],
) -> None:
    service_, channel = xds
    client, eds = await subscribed(channel, [A, B])
    try:
        service_.update(config=mesh(40))
        cds = await client.recv()
        assert cds.type_url == CDS
        await client.expect_silence(0.2)  # the assignments did not change
        client.ack(cds)
        # Envoy's warming cluster: the same names, version and nonce it already has.
        client.send(EDS, [A, B], version=eds.version_info, nonce=eds.nonce)
        again = await client.recv()
        assert (again.type_url, again.version_info) == (EDS, eds.version_info)
        assert again.nonce != eds.nonce
        assert sorted(resource_names(again)) == [A, B]
        client.ack(again, [A, B])
        await client.expect_silence(0.3)  # answered once, not in a loop
    finally:
        await client.close()


async def test_repeat_for_an_unchanged_cluster_or_a_nack_is_not_answered(
    xds: tuple[XdsService, grpc.aio.Channel],
) -> None:
    service_, channel = xds
    client, eds = await subscribed(channel, [B])
    try:
        client.send(EDS, [B], version=eds.version_info, nonce=eds.nonce)
        await client.expect_silence(0.3)  # a repeated ACK, nothing changed
        service_.update(config=mesh(40))  # a's cluster changes, b's does not
        client.ack(await client.recv())
        client.send(EDS, [B], version=eds.version_info, nonce=eds.nonce)
        await client.expect_silence(0.3)
    finally:
        await client.close()

    nacking, eds = await subscribed(channel, [A])
    try:
        service_.update(config=mesh(50))
        nacking.ack(await nacking.recv())
        nacking.send(EDS, [A], version=eds.version_info, nonce=eds.nonce, error="refused")
        await nacking.expect_silence(0.3)  # a NACK holds the version, owed or not
    finally:
        await nacking.close()
