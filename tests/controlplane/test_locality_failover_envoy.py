"""Envoy 1.40 as a mesh sidecar follows the same locality priorities: calls stay
in its own locality, move to the next priority once outlier detection ejects the
downed endpoint, and come back after the ejection ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.model import MeshConfig
from controlplane.traffic_model import OutlierDetection, TrafficPolicy
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from controlplane.xds import XdsService
from tests.controlplane.cluster_cases import endpoint, rule, service
from tests.controlplane.envoy_harness import EnvoyProcess, bootstrap
from tests.controlplane.polling import eventually
from tests.support.waiting import free_port
from tests.support.xds_service import serving_xds

AUTHORITY = "failover:50051"


async def _echo_server(reply: str, port: int = 0) -> tuple[grpc.aio.Server, int]:
    async def say(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return reply.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})]
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[XdsService, int]]:
    xds = XdsService(debounce_s=0.01)
    async with serving_xds(xds) as port:
        yield xds, port


def _mesh(near_port: int, far_port: int) -> MeshConfig:
    entry = service(
        "failover",
        endpoint("127.0.0.1", port=near_port, locality="r1/z1"),
        endpoint("127.0.0.1", port=far_port, locality="r2/z1"),
    )
    fast = OutlierDetection(interval_s=0.5, base_ejection_time_s=1.0, max_ejection_percent=100)
    policy = TrafficPolicy(outlier_detection=fast)
    return MeshConfig(service_entries=(entry,), destination_rules=(rule("failover", policy),))


async def _calls(channel: grpc.aio.Channel, count: int) -> list[str]:
    say = channel.unary_unary("/test.Echo/Say", request_serializer=None, response_deserializer=None)
    replies = []
    for _ in range(count):
        try:
            replies.append(bytes(await say(b"hi", timeout=5)).decode())
        except grpc.aio.AioRpcError as exc:
            replies.append(f"error: {exc.code().name}")
    return replies


async def _until_all(channel: grpc.aio.Channel, reply: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = await _calls(channel, 5)
        if seen == [reply] * 5:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"calls never all went to {reply!r}; last: {seen}")


def _acked(xds: XdsService, node_id: str) -> bool:
    versions = xds.snapshot_versions().get(node_id, {})
    for stream in xds.clients_status():
        types = stream["types"]
        if stream["node_id"] == node_id and isinstance(types, dict):
            return all(
                types.get(url, {}).get("acked_version") == versions.get(url)
                for url in (CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL)
            )
    return False


async def test_envoy_sidecar_fails_over_to_the_next_priority_and_back(
    control_plane: tuple[XdsService, int], tmp_path: Path
) -> None:
    xds, xds_port = control_plane
    near, near_port = await _echo_server("near")
    far, far_port = await _echo_server("far")
    outbound = free_port()
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    config = bootstrap(
        xds_port, "envoy-failover", locality={"region": "r1", "zone": "z1"}, metadata=metadata
    )
    try:
        xds.update(config=_mesh(near_port, far_port))
        async with EnvoyProcess(tmp_path / "envoy", config):
            await eventually(lambda: _acked(xds, "envoy-failover"), timeout=10, what="Envoy ACKs")
            options = [("grpc.default_authority", AUTHORITY)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{outbound}", options=options) as ch:
                # five in a row from "near" only: "far" is a lower priority, not a peer
                await _until_all(ch, "near")
                await near.stop(None)
                await _until_all(ch, "far")
                near, _ = await _echo_server("near", near_port)
                await _until_all(ch, "near", timeout=15)
    finally:
        await near.stop(None)
        await far.stop(None)
