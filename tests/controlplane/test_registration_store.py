"""Registrations written behind to the SQLite store and restored after a restart with
the TTL they had left; stored records are re-validated on the way back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.model import Locality
from controlplane.registration_store import (
    RegistrationJournal,
    restore,
    workload_from_record,
    workload_record,
)
from controlplane.registry import RegistrationRequest, Registry
from controlplane.store import SqliteStore, StoredRegistration


class Clocks:
    """The registry's monotonic clock and the journal's wall clock, moved together."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


def request(workload_id: str, service: str = "sessions") -> RegistrationRequest:
    return RegistrationRequest(
        service=service,
        address="10.0.0.7",
        ports={50051: 50061},
        labels={"version": "v1"},
        locality=Locality("eu", "", "rack-1"),
        weight=3,
        ttl_s=30,
        namespace="shop",
        id=workload_id,
    )


async def test_registrations_heartbeats_and_removals_reach_the_store(tmp_path: Path) -> None:
    clocks = Clocks()
    store = SqliteStore(tmp_path / "store.db", clock=clocks.wall)
    await store.open()
    journal = RegistrationJournal(store, clock=clocks.wall)
    registry = Registry(clock=clocks.monotonic, journal=journal)
    kept = registry.register(request("kept"))
    registry.register(request("left", service="other"))
    registry.register(request("lapsed", service="third"))
    await journal.flush()
    clocks.now = 20.0
    registry.heartbeat("kept")  # until 50 s; "lapsed" gets none: until 30 s
    registry.deregister("left")
    await journal.flush()
    clocks.now = 45.0
    assert registry.sweep() == ("lapsed",)
    await journal.flush()
    await store.close()

    clocks.now = 48.0  # "restart": a new process reads the store
    contents = await store.open()
    alive, dropped = restore(contents.registrations, clocks.wall())
    assert dropped == []
    assert [(w, round(left, 3)) for w, left in alive] == [(kept, 2.0)]
    fresh = Registry(clock=clocks.monotonic)
    fresh.restore(alive)
    assert fresh.snapshot() == (kept,)
    assert fresh.remaining_ttl("kept") == 2.0
    assert fresh.heartbeat("kept") == 30.0  # same id, new process: no re-registration needed
    await store.close()


async def test_a_write_behind_task_coalesces_and_flushes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    journal = RegistrationJournal(store)
    registry = Registry(journal=journal)
    writer = asyncio.create_task(journal.run())
    try:
        registry.register(request("a"))
        for _ in range(50):
            registry.heartbeat("a")
        await asyncio.wait_for(journal.wait_idle(), timeout=5)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    await store.close()
    contents = await store.open()
    assert [r.id for r in contents.registrations] == ["a"]
    await store.close()


def test_records_round_trip_and_bad_ones_are_dropped() -> None:
    registry = Registry()
    workload = registry.register(request("w1"))
    record = workload_record(workload)
    assert workload_from_record("w1", record) == workload
    broken = {**record, "ports": {"http": 1}}
    invalid = {**record, "address": "not-an-ip"}
    alive, dropped = restore(
        [
            StoredRegistration("ok", record, 1030.0),
            StoredRegistration("broken", broken, 1030.0),
            StoredRegistration("invalid", invalid, 1030.0),
            StoredRegistration("not-a-record", [1, 2], 1030.0),  # type: ignore[arg-type]
            StoredRegistration("expired", record, 999.0),
        ],
        now=1000.0,
    )
    assert [(w.id, left) for w, left in alive] == [("ok", 30.0)]
    assert dropped == ["broken", "invalid", "not-a-record", "expired"]
