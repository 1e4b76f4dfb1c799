"""Delta clients in the fleet view of a real control plane process: a raw Delta
client that NACKs shows NACKED (with the error) in ``/v1/clients`` and ``meshctl
proxy-status``, keeps its last good config (nothing is resent), and ``/metrics``
counts its pushes and its NACK; an Envoy sidecar on Delta follows file edits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from tests.controlplane.delta_harness import RawDeltaClient, names
from tests.support.backends import http_backends
from tests.support.envoy import envoy_or_skip, running_envoy_sidecar
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CLUSTER = "outbound|50051||echo"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))


@pytest.fixture
def cp(config: Path) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(config, extra_args=["--replica-id", "replica-d"]) as cp:
        yield cp


@pytest.fixture
async def delta(cp: ControlPlaneProcess) -> AsyncIterator[RawDeltaClient]:
    channel = grpc.aio.insecure_channel(cp.xds_address)
    client = RawDeltaClient(channel, "delta-1", user_agent="envoy")
    try:
        yield client
    finally:
        await client.close()
        await channel.close(None)


def _entry(cp: ControlPlaneProcess, expected: dict[str, str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        shown = httpx.get(f"{cp.admin_url}/v1/clients", timeout=5).json()["clients"]
        for entry in shown:
            if entry["node_id"] == "delta-1" and entry["status"] == expected:
                return dict(entry)
        return None

    return wait_for(probe, timeout=15, what=f"delta-1 to show {expected}")


def _proxy_status(cp: ControlPlaneProcess) -> dict[str, Any]:
    command = [sys.executable, "-m", "controlplane.meshctl", "proxy-status", "-o", "json"]
    result = subprocess.run(
        [*command, "--admin-address", cp.admin_address],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {item["node"]: item for item in json.loads(result.stdout)["items"]}


def _metric(cp: ControlPlaneProcess, sample: str) -> float:
    for line in httpx.get(f"{cp.admin_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {sample}")


async def test_a_delta_client_shows_synced_then_nacked_and_is_counted(
    cp: ControlPlaneProcess, delta: RawDeltaClient, config: Path
) -> None:
    delta.send(CLUSTER_TYPE_URL)
    assert names(await delta.recv_acked(timeout=10)) == [CLUSTER]
    delta.send(ENDPOINTS_TYPE_URL, [CLUSTER])
    eds = await delta.recv(timeout=10)
    delta.nack(eds, "endpoint 7001 refused")
    expected = {"CDS": "SYNCED", "EDS": "NACKED", "LDS": "NOT SENT", "RDS": "NOT SENT"}
    entry = await asyncio.to_thread(_entry, cp, expected)
    assert (entry["xds"], entry["kind"], entry["replica"]) == ("delta", "envoy", "replica-d")
    nack = entry["types"][ENDPOINTS_TYPE_URL]["last_nack"]
    assert (nack["error"], nack["nonce"]) == ("endpoint 7001 refused", eds.nonce)
    shown = (await asyncio.to_thread(_proxy_status, cp))["delta-1"]
    assert shown["types"] == expected
    assert shown["errors"] == {"EDS": "endpoint 7001 refused"}
    await delta.expect_silence(0.5)  # the refused assignment is held, not resent

    assert await asyncio.to_thread(_metric, cp, 'pilot_xds{kind="envoy"}') == 1
    assert await asyncio.to_thread(_metric, cp, 'pilot_total_xds_rejects{type="eds"}') == 1
    assert await asyncio.to_thread(_metric, cp, 'pilot_xds_pushes{type="cds"}') >= 1

    # An edit of the endpoints: only the assignment goes out, and its ACK syncs EDS.
    write_config(config, service_entry("echo", 50051, [7002]))
    fixed = await delta.recv_acked(timeout=15)
    assert (fixed.type_url, names(fixed)) == (ENDPOINTS_TYPE_URL, [CLUSTER])
    expected = {**expected, "EDS": "SYNCED"}
    await asyncio.to_thread(_entry, cp, expected)


def test_an_envoy_sidecar_on_delta_follows_file_edits_and_shows_synced(
    cp: ControlPlaneProcess, config: Path, tmp_path: Path
) -> None:
    """The whole path: a config file edit, the rebuild, a Delta push, traffic through
    Envoy; proxy-status shows the sidecar as envoy, all four types SYNCED."""
    envoy_or_skip()
    with http_backends(2) as (h0, h1):
        write_config(config, service_entry("alpha", 8080, [h0.port], protocol="HTTP"))
        with running_envoy_sidecar(
            tmp_path / "envoy", cp.xds_address, "edge-d", delta=True
        ) as envoy:
            url = f"http://127.0.0.1:{envoy.outbound_port}/"

            def answer(host: str) -> str:
                try:
                    response = httpx.get(url, headers={"host": host}, timeout=5)
                except httpx.HTTPError as exc:
                    return repr(exc)
                if response.status_code != 200:
                    return f"HTTP {response.status_code}"
                return str(response.json()["served_by"])

            def until(host: str, wanted: set[str]) -> None:
                wait_for(
                    lambda: answer(host) in wanted or None, timeout=15, what=f"{host} -> {wanted}"
                )

            until("alpha:8080", {h0.name})
            both = [
                service_entry("alpha", 8080, [h0.port], protocol="HTTP"),
                service_entry("beta", 8080, [h1.port], protocol="HTTP"),
            ]
            write_config(config, *both)
            until("beta:8080", {h1.name})
            write_config(config, service_entry("beta", 8080, [h1.port], protocol="HTTP"))
            until("alpha:8080", {"HTTP 404", "HTTP 503"})

            all_synced = {"CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "SYNCED"}
            wait_for(
                lambda: _proxy_status(cp).get("edge-d", {}).get("types") == all_synced or None,
                timeout=15,
                what="edge-d all SYNCED in proxy-status",
            )
            shown = _proxy_status(cp)["edge-d"]
            assert (shown["kind"], shown["replica"]) == ("envoy", "replica-d")
            clients = httpx.get(f"{cp.admin_url}/v1/clients", timeout=5).json()["clients"]
            assert [c["xds"] for c in clients if c["node_id"] == "edge-d"] == ["delta"]
