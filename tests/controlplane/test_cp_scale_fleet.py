"""bench/cp_scale.py's simulated clients against the real xDS server: each is its own
stream and node, gets the four types it asks for, ACKs every response (so it is
pushed again on a change), and notes when each version arrived."""

from __future__ import annotations

import asyncio
import time

from bench.cp_scale_fleet import CDS, EDS, LDS, RDS, Fleet
from controlplane.xds import XdsService
from tests.controlplane.ads_harness import mesh, service_entry
from tests.support.xds_service import serving_xds

NAMES = {LDS: ["a:80"], RDS: ["a:80"], CDS: ["outbound|80||a"], EDS: ["outbound|80||a"]}


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_simulated_clients_sync_and_follow_a_change() -> None:
    service = XdsService(debounce_s=0.01)
    service.update(config=mesh(service_entry("a")))
    async with serving_xds(service) as port:
        fleet = Fleet(f"127.0.0.1:{port}", streams_per_channel=2)
        try:
            fleet.connect([0, 1, 2], [NAMES] * 3)
            await _until(lambda: None not in fleet.synced())
            nodes = {s["node_id"] for s in service.clients_status()}
            assert nodes == {"bench-00000", "bench-00001", "bench-00002"}
            since = time.time()
            service.update(config=mesh(service_entry("a", addresses=("10.0.0.2",))))
            await _until(lambda: None not in fleet.arrivals(since, EDS))
            assert all(c.errors == 0 for c in fleet.clients)
            # Every response was ACKed: nothing is left awaiting an answer.
            await _until(
                lambda: all(
                    set(s["status"].values()) == {"SYNCED"}  # type: ignore[attr-defined]
                    for s in service.clients_status()
                )
            )
        finally:
            await fleet.close()
