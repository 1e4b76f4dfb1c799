"""grpcio's native xDS client follows the locality priorities translate computes:
with outlier detection configured, calls stay in the client's own locality,
move to the next priority when that locality goes down, and come back."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.model import MeshConfig
from controlplane.traffic_model import OutlierDetection, TrafficPolicy
from controlplane.xds import XdsService
from tests.controlplane.cluster_cases import endpoint, rule, service
from tests.support.xds_service import serving_xds

CLIENT = Path(__file__).with_name("grpcio_call_loop.py")
TARGET = "xds:///failover:50051"


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
    service_ = XdsService(debounce_s=0.01)
    async with serving_xds(service_) as port:
        yield service_, port


class CallLoop:
    """The grpcio client subprocess, driven line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def calls(self, count: int) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{TARGET} {count}\n".encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        replies = json.loads(line)
        assert isinstance(replies, list)
        return [str(r) for r in replies]

    async def until_all(self, reply: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = await self.calls(5)
            if seen == [reply] * 5:
                return
        raise AssertionError(f"calls never all went to {reply!r}; last: {seen}")


@pytest.fixture
async def client(control_plane: tuple[XdsService, int]) -> AsyncIterator[CallLoop]:
    _, xds_port = control_plane
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": "grpcio-failover", "locality": {"region": "r1", "zone": "z1"}},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        env={"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(bootstrap), "PATH": ""},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    yield CallLoop(process)
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _mesh(near_port: int, far_port: int, *, outliers: bool) -> MeshConfig:
    entry = service(
        "failover",
        endpoint("127.0.0.1", port=near_port, locality="r1/z1"),
        endpoint("127.0.0.1", port=far_port, locality="r2/z1"),
    )
    policy = TrafficPolicy(outlier_detection=OutlierDetection()) if outliers else None
    return MeshConfig(service_entries=(entry,), destination_rules=(rule("failover", policy),))


async def test_grpcio_fails_over_to_the_next_priority_and_back(
    control_plane: tuple[XdsService, int], client: CallLoop
) -> None:
    xds, _ = control_plane
    near, near_port = await _echo_server("near")
    far, far_port = await _echo_server("far")
    try:
        xds.update(config=_mesh(near_port, far_port, outliers=True))
        assert await client.calls(10) == ["near"] * 10
        await near.stop(None)
        await client.until_all("far")
        near, _ = await _echo_server("near", near_port)
        await client.until_all("near", timeout=15)
    finally:
        await near.stop(None)
        await far.stop(None)


async def test_without_outlier_detection_both_localities_share_priority_0(
    control_plane: tuple[XdsService, int], client: CallLoop
) -> None:
    xds, _ = control_plane
    near, near_port = await _echo_server("near")
    far, far_port = await _echo_server("far")
    try:
        xds.update(config=_mesh(near_port, far_port, outliers=False))
        assert sorted(set(await client.calls(20))) == ["far", "near"]
    finally:
        await near.stop(None)
        await far.stop(None)
