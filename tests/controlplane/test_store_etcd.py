"""What only the etcd store does, against real etcd members started here: replicas
following each other's commits through the watch, registrations on leases that etcd
drops, failover between members, and a clear error when no member answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.store import (
    ABSENT,
    Change,
    EtcdStore,
    PutResource,
    ResourceKey,
    StoredRegistration,
    StoreError,
)
from controlplane.store.etcd import ETCD_ORIGIN
from tests.support.etcd import etcd_cluster, require_etcd
from tests.support.waiting import free_port

VS = ResourceKey("VirtualService", "default", "reviews")
DOC = {"kind": "VirtualService", "metadata": {"name": "reviews"}, "spec": {}}


@pytest.fixture(autouse=True)
def _etcd_installed() -> None:
    require_etcd()


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_replica_sees_the_other_replicas_commits_once(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path) as cluster:
        one, two = EtcdStore(cluster.endpoints), EtcdStore(cluster.endpoints)
        await one.open()
        await two.open()
        try:
            seen_one: list[Change] = []
            seen_two: list[Change] = []
            one.watch(seen_one.append)
            two.watch(seen_two.append)
            revision = await one.commit([PutResource(VS, DOC, ABSENT)])
            registration = StoredRegistration("w1", {"service": "s"}, time.time() + 30)
            await one.save_registrations([registration], [])
            await until(lambda: len(seen_two) == 2, "the commits at the other replica")
            assert [c.origin for c in seen_two] == [one.origin, one.origin]
            assert seen_two[0].revision == revision
            assert seen_two[0].resources_put[0].version == revision
            assert seen_two[1].registrations_put == (registration,)
            # A heartbeat at one moves the expiry the other one knows.
            await one.touch_registrations({"w1": registration.expires_at + 100})
            await until(lambda: len(seen_two) == 3, "the heartbeat at the other replica")
            assert seen_two[2].registrations_put[0].expires_at == registration.expires_at + 100
            await asyncio.sleep(0.3)  # the watch delivered one's own commits too: not again
            assert len(seen_one) == 2
        finally:
            await one.close()
            await two.close()


async def test_a_registration_whose_lease_runs_out_is_gone_everywhere(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path) as cluster:
        one, two = EtcdStore(cluster.endpoints), EtcdStore(cluster.endpoints)
        await one.open()
        await two.open()
        try:
            seen: list[Change] = []
            two.watch(seen.append)
            await one.save_registrations([StoredRegistration("w", {}, time.time() + 1)], [])
            await until(
                lambda: any(c.registrations_deleted == ("w",) for c in seen),
                "etcd dropping the registration",
            )
            assert seen[-1].origin == ETCD_ORIGIN
            await one.close()
            assert (await one.open()).registrations == ()
        finally:
            await one.close()
            await two.close()


async def test_no_member_answering_is_a_clear_error() -> None:
    ports = [free_port(), free_port()]
    store = EtcdStore([f"127.0.0.1:{p}" for p in ports], retry_s=0.3)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert f"etcd is unreachable at 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}" in str(caught.value)
    await store.close()


async def test_one_member_of_three_down_stops_nothing(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path, members=3) as cluster:
        dead = f"127.0.0.1:{free_port()}"  # a member listed first that never answers
        one = EtcdStore([dead, *cluster.endpoints])
        two = EtcdStore(cluster.endpoints)
        await one.open()
        await two.open()
        try:
            seen: list[Change] = []
            two.watch(seen.append)
            first = await one.commit([PutResource(VS, DOC, ABSENT)])
            await until(lambda: len(seen) == 1, "the first commit")
            cluster.members[0].kill()  # the member both stores talk to (and watch on)
            second = await one.commit([PutResource(VS, {**DOC, "spec": {"x": 1}}, first)])
            await until(lambda: len(seen) == 2, "a commit after a member died")
            assert seen[1].revision == second
            registration = StoredRegistration("w", {"service": "s"}, time.time() + 30)
            await two.save_registrations([registration], [])
            await one.close()
            contents = await one.open()
            assert [r.version for r in contents.resources] == [second]
            assert [r.id for r in contents.registrations] == ["w"]
        finally:
            await one.close()
            await two.close()
