"""Over ADS, each node gets the route table its bootstrap LABELS select; a node whose
LABELS or NAMESPACE cannot be read is refused on its own stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.route.v3 import route_pb2

from controlplane.traffic_model import HTTPMatchRequest, HTTPRoute
from controlplane.translate.typeurls import ROUTE_CONFIG_TYPE_URL
from controlplane.xds import XdsService
from tests.controlplane.ads_harness import RawAdsClient
from tests.controlplane.route_cases import config, to, vs
from tests.support.xds_service import xds_channel

MESH = config(
    vs(
        HTTPRoute(
            name="canary",
            match=(HTTPMatchRequest(source_labels={"version": "canary"}),),
            route=(to("sessions", port=8080),),
        ),
        HTTPRoute(name="rest", route=(to("attendees"),)),
    )
)


@pytest.fixture
async def xds() -> AsyncIterator[tuple[XdsService, grpc.aio.Channel]]:
    service = XdsService(debounce_s=0.01)
    async with xds_channel(service) as channel:
        yield service, channel


async def _routes(
    channel: grpc.aio.Channel, node_id: str, metadata: dict[str, object]
) -> list[str]:
    client = RawAdsClient(channel, node_id, metadata)
    try:
        client.send(ROUTE_CONFIG_TYPE_URL, ["attendees:8080"])
        response = await client.recv()
    finally:
        await client.close()
    table = route_pb2.RouteConfiguration()
    assert response.resources[0].Unpack(table)
    return [route.name for route in table.virtual_hosts[0].routes]


async def test_each_node_gets_the_routes_of_its_labels(
    xds: tuple[XdsService, grpc.aio.Channel],
) -> None:
    service, channel = xds
    service.update(config=MESH)
    canary = {"LABELS": {"version": "canary", "app": "web"}}
    assert await _routes(channel, "canary-1", canary) == ["canary", "rest"]
    assert await _routes(channel, "stable-1", {"LABELS": {"version": "v1"}}) == ["rest"]
    assert await _routes(channel, "bare-1", {}) == ["rest"]


@pytest.mark.parametrize(
    ("metadata", "named"),
    [({"LABELS": "version=canary"}, "'LABELS'"), ({"NAMESPACE": 3}, "'NAMESPACE'")],
)
async def test_unreadable_labels_are_refused_alone(
    xds: tuple[XdsService, grpc.aio.Channel], metadata: dict[str, object], named: str
) -> None:
    service, channel = xds
    service.update(config=MESH)
    bad = RawAdsClient(channel, "bad", metadata)
    try:
        bad.send(ROUTE_CONFIG_TYPE_URL, ["attendees:8080"])
        await bad.wait_closed()
        assert bad.error is not None
        assert bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert named in (bad.error.details() or "")
    finally:
        await bad.close()
    assert await _routes(channel, "good", {"LABELS": {"version": "canary"}}) == ["canary", "rest"]
