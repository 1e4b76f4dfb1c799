"""The store contract, run against every implementation: SQLite on a real file and etcd
(a real member started here). Revisions only grow (by one per commit on SQLite; etcd's
own on etcd), compare-and-swap batches are all or nothing, the change feed announces
every commit with its origin, registrations outlive the process until they expire, the CA
is created once (compare-and-create: racing instances get one) and revoked tokens are kept
and fed to other instances."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from controlplane.store import (
    ABSENT,
    Change,
    DeleteResource,
    EtcdStore,
    PutResource,
    ResourceKey,
    RevokedToken,
    SqliteStore,
    Store,
    StoredCa,
    StoredRegistration,
    StoreError,
    VersionConflict,
)
from tests.support.etcd import EtcdCluster, etcd_cluster, require_etcd

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")
Clock = Callable[[], float]
MakeStore = Callable[..., Store]
_prefixes = itertools.count()


def doc(name: str, timeout: str = "1s") -> dict[str, object]:
    return {"kind": "VirtualService", "metadata": {"name": name}, "spec": {"timeout": timeout}}


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    require_etcd()
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "etcd"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A factory of stores on one backing (a file; a key prefix of its own on etcd)."""
    if request.param == "sqlite":
        return lambda **kw: SqliteStore(tmp_path / "store.db", **kw)
    cluster: EtcdCluster = request.getfixturevalue("shared_etcd")
    prefix = f"/test-{next(_prefixes)}-{tmp_path.name}/"
    return lambda **kw: EtcdStore(cluster.endpoints, prefix=prefix, **kw)


@pytest.fixture
async def store(make_store: MakeStore) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_commit_moves_the_revision_and_versions_its_resources(store: Store) -> None:
    start = await store.commit([])
    first = await store.commit([PutResource(VS, doc("reviews"), ABSENT)])
    second = await store.commit([PutResource(DR, doc("dr"), ABSENT)])
    assert start < first < second
    assert await store.commit([]) == second
    third = await store.commit([PutResource(VS, doc("reviews", "2s"), expected_version=first)])
    assert third > second
    await store.close()
    contents = await store.open()
    assert contents.revision >= third
    assert [(r.key, r.version) for r in contents.resources] == [(DR, second), (VS, third)]
    assert contents.resources[1].document == doc("reviews", "2s")


async def test_one_stale_write_refuses_the_whole_batch(store: Store) -> None:
    first = await store.commit([PutResource(VS, doc("reviews"), ABSENT)])
    stale = first + 7
    with pytest.raises(VersionConflict, match=f"resourceVersion {first}, not {stale}") as caught:
        await store.commit([PutResource(DR, doc("dr"), ABSENT), PutResource(VS, doc("x"), stale)])
    assert (caught.value.key, caught.value.expected, caught.value.actual) == (VS, stale, first)
    with pytest.raises(VersionConflict, match="already exists"):
        await store.commit([PutResource(VS, doc("x"), ABSENT)])
    with pytest.raises(VersionConflict, match="does not exist"):
        await store.commit([DeleteResource(DR)])
    await store.close()
    contents = await store.open()
    assert [(r.key, r.version) for r in contents.resources] == [(VS, first)]


async def test_unconditional_writes_and_deletes(store: Store) -> None:
    await store.commit([PutResource(VS, doc("a"))])
    second = await store.commit([PutResource(VS, doc("b"))])  # no expectation: overwrites
    assert await store.commit([DeleteResource(VS, expected_version=second)]) > second
    await store.close()
    assert (await store.open()).resources == ()


async def test_a_batch_writes_each_key_once(store: Store) -> None:
    with pytest.raises(StoreError, match="at most once"):
        await store.commit([PutResource(VS, doc("a")), DeleteResource(VS)])


async def test_watchers_see_every_commit_with_its_origin(store: Store) -> None:
    seen: list[Change] = []
    cancel = store.watch(seen.append)
    first = await store.commit(
        [PutResource(VS, doc("a"), ABSENT), PutResource(DR, doc("d"), ABSENT)]
    )
    second = await store.commit([DeleteResource(DR, first)])
    registration = StoredRegistration("w1", {"service": "s"}, 4e9)
    await store.save_registrations([registration], ["gone"])
    cancel()
    await store.commit([DeleteResource(VS, first)])
    assert [c.revision for c in seen] == [first, second, 0]
    assert {r.key for r in seen[0].resources_put} == {VS, DR}
    assert seen[1].resources_deleted == (DR,)
    assert seen[2].registrations_put == (registration,)
    assert seen[2].registrations_deleted == ("gone",)
    assert {c.origin for c in seen} == {store.origin}


async def test_registrations_outlive_the_process_until_they_expire(make_store: MakeStore) -> None:
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    await store.save_registrations(
        [
            StoredRegistration("short", {"service": "a"}, 1010.0),
            StoredRegistration("long", {"service": "b"}, 1030.0),
            StoredRegistration("dropped", {"service": "c"}, 1030.0),
        ],
        [],
    )
    await store.save_registrations([], ["dropped"])
    await store.touch_registrations({"short": 1040.0, "unknown": 1.0})
    await store.close()
    now[0] = 1035.0
    contents = await store.open()
    assert [(r.id, r.expires_at) for r in contents.registrations] == [("short", 1040.0)]
    await store.close()
    now[0] = 1000.0  # what expired was removed, not merely hidden
    assert [r.id for r in (await store.open()).registrations] == ["short"]
    await store.close()


async def test_calls_before_open_are_refused(make_store: MakeStore) -> None:
    with pytest.raises(StoreError, match="not open"):
        await make_store().commit([PutResource(VS, doc("a"))])


CA_A = StoredCa("key A", "chain A", "example.org")
CA_B = StoredCa("key B", "chain B", "example.org")


async def test_the_first_ca_created_is_the_one_kept(make_store: MakeStore) -> None:
    first = make_store()
    assert (await first.open()).ca is None
    assert await first.create_ca(CA_A) == CA_A
    assert await first.create_ca(CA_B) == CA_A  # already held: the offer is ignored
    await first.close()
    second = make_store()
    assert (await second.open()).ca == CA_A
    assert await second.create_ca(CA_B) == CA_A
    await second.close()


async def test_revoked_tokens_are_kept_until_they_expire(make_store: MakeStore) -> None:
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.open()
    seen: list[Change] = []
    store.watch(seen.append)
    revoked = [RevokedToken("t1", 1010.0), RevokedToken("t2", 1100.0)]
    await store.revoke_tokens(revoked)
    assert [c.tokens_revoked for c in seen] == [tuple(revoked)]
    await store.close()
    assert sorted((await store.open()).revoked_tokens, key=lambda r: r.id) == revoked
    await store.close()
    now[0] = 1050.0
    assert (await store.open()).revoked_tokens == (RevokedToken("t2", 1100.0),)
    await store.close()


async def test_replicas_racing_on_etcd_get_one_ca_and_each_others_revocations(
    shared_etcd: EtcdCluster,
) -> None:
    prefix = f"/test-race-{next(_prefixes)}/"
    one, two = (EtcdStore(shared_etcd.endpoints, prefix=prefix) for _ in range(2))
    await one.open()
    await two.open()
    try:
        seen: list[Change] = []
        two.watch(seen.append)
        won = await asyncio.gather(one.create_ca(CA_A), two.create_ca(CA_B))
        assert won[0] == won[1] and won[0] in (CA_A, CA_B)
        await one.revoke_tokens([RevokedToken("t1", 4e9)])
        for _ in range(100):
            if any(c.tokens_revoked for c in seen):
                break
            await asyncio.sleep(0.05)
        followed = [c for c in seen if c.tokens_revoked]
        assert [(c.origin, c.tokens_revoked) for c in followed] == [
            (one.origin, (RevokedToken("t1", 4e9),))
        ]
    finally:
        await one.close()
        await two.close()
