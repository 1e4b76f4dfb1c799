"""grpcio's own xDS client accepts what the server sends (ACKs every type)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.model import MeshConfig, Resolution, ServiceEntry, ServicePort, WorkloadSpec
from controlplane.xds import XdsService
from tests.support.xds_service import serving_xds

CLIENT = Path(__file__).with_name("grpcio_xds_client.py")


async def _echo_server(reply: str) -> tuple[grpc.aio.Server, int]:
    async def say(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return reply.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def backends() -> AsyncIterator[list[int]]:
    servers = [await _echo_server(name) for name in ("one", "two")]
    yield [port for _, port in servers]
    for server, _ in servers:
        await server.stop(None)


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[XdsService, int]]:
    service = XdsService(debounce_s=0.01)
    async with serving_xds(service) as port:
        yield service, port


async def test_grpcio_native_client_acks_and_spreads_calls(
    backends: list[int], control_plane: tuple[XdsService, int]
) -> None:
    service, xds_port = control_plane
    endpoints = tuple(WorkloadSpec("127.0.0.1", ports={"grpc": port}) for port in backends)
    entry = ServiceEntry(
        name="echo",
        namespace="default",
        hosts=("echo",),
        ports=(ServicePort(50051, "grpc", "GRPC"),),
        resolution=Resolution.STATIC,
        endpoints=endpoints,
    )
    service.update(config=MeshConfig(service_entries=(entry,)))
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": "grpcio-native", "locality": {"zone": "z1"}},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        "xds:///echo:50051",
        "8",
        env={"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(bootstrap), "PATH": ""},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert json.loads(line) == ["one", "two"]
        (stream,) = service.clients_status()
        assert stream["node_id"] == "grpcio-native"
        types = stream["types"]
        assert isinstance(types, dict)
        versions = service.snapshot_versions()["grpcio-native"]
        assert len(types) == 4
        for type_url, status in types.items():
            assert status["acked_version"] == versions[type_url], type_url
            assert status["last_nack"] is None
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
