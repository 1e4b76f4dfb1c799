"""The SQLite store on real files: revisions, compare-and-swap batches, the change feed,
registrations with expiry, one holder per file, and the --store / --data-dir choice."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.store import (
    ABSENT,
    Change,
    DeleteResource,
    PutResource,
    ResourceKey,
    SqliteStore,
    StoredRegistration,
    StoreError,
    StoreLocationError,
    VersionConflict,
    locate_store,
)

VS = ResourceKey("VirtualService", "default", "reviews")
DR = ResourceKey("DestinationRule", "default", "reviews")


def doc(name: str, timeout: str = "1s") -> dict[str, object]:
    return {"kind": "VirtualService", "metadata": {"name": name}, "spec": {"timeout": timeout}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_commit_moves_the_revision_and_versions_its_resources(store: SqliteStore) -> None:
    assert await store.commit([]) == 0
    first = await store.commit([PutResource(VS, doc("reviews"), ABSENT)])
    second = await store.commit([PutResource(DR, doc("dr"), ABSENT)])
    assert (first, second) == (1, 2)
    third = await store.commit([PutResource(VS, doc("reviews", "2s"), expected_version=1)])
    assert third == 3
    await store.close()
    contents = await store.open()
    assert contents.revision == 3
    assert [(r.key, r.version) for r in contents.resources] == [(DR, 2), (VS, 3)]
    assert contents.resources[1].document == doc("reviews", "2s")


async def test_one_stale_write_refuses_the_whole_batch(store: SqliteStore) -> None:
    await store.commit([PutResource(VS, doc("reviews"), ABSENT)])
    with pytest.raises(VersionConflict, match="resourceVersion 1, not 7") as caught:
        await store.commit([PutResource(DR, doc("dr"), ABSENT), PutResource(VS, doc("x"), 7)])
    assert (caught.value.key, caught.value.expected, caught.value.actual) == (VS, 7, 1)
    with pytest.raises(VersionConflict, match="already exists"):
        await store.commit([PutResource(VS, doc("x"), ABSENT)])
    with pytest.raises(VersionConflict, match="does not exist"):
        await store.commit([DeleteResource(DR)])
    await store.close()
    contents = await store.open()
    assert contents.revision == 1
    assert [r.key for r in contents.resources] == [VS]


async def test_unconditional_writes_and_deletes(store: SqliteStore) -> None:
    await store.commit([PutResource(VS, doc("a"))])
    await store.commit([PutResource(VS, doc("b"))])  # no expectation: overwrites
    assert await store.commit([DeleteResource(VS, expected_version=2)]) == 3
    await store.close()
    assert (await store.open()).resources == ()


async def test_a_batch_writes_each_key_once(store: SqliteStore) -> None:
    with pytest.raises(StoreError, match="at most once"):
        await store.commit([PutResource(VS, doc("a")), DeleteResource(VS)])


async def test_watchers_see_every_commit_with_its_origin(store: SqliteStore) -> None:
    seen: list[Change] = []
    cancel = store.watch(seen.append)
    await store.commit([PutResource(VS, doc("a"), ABSENT), PutResource(DR, doc("d"), ABSENT)])
    await store.commit([DeleteResource(DR, 1)])
    registration = StoredRegistration("w1", {"service": "s"}, 4e9)
    await store.save_registrations([registration], ["gone"])
    cancel()
    await store.commit([DeleteResource(VS, 1)])
    assert [c.revision for c in seen] == [1, 2, 0]
    assert {r.key for r in seen[0].resources_put} == {VS, DR}
    assert seen[1].resources_deleted == (DR,)
    assert seen[2].registrations_put == (registration,)
    assert seen[2].registrations_deleted == ("gone",)
    assert {c.origin for c in seen} == {store.origin}


async def test_registrations_outlive_the_process_until_they_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = SqliteStore(tmp_path / "store.db", clock=lambda: now[0])
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


async def test_one_control_plane_per_file(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "store.db")
    await first.open()
    second = SqliteStore(tmp_path / "store.db")
    try:
        with pytest.raises(StoreError, match=r"in use by another control plane \(pid \d+\)"):
            await second.open()
    finally:
        await first.close()
    await second.open()  # free once the first is closed
    await second.close()


async def test_memory_store_keeps_nothing() -> None:
    store = SqliteStore(None)
    assert (store.url, store.persistent) == ("memory", False)
    await store.open()
    await store.commit([PutResource(VS, doc("a"))])
    await store.close()
    assert (await store.open()).resources == ()
    await store.close()


async def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"store.db: not a usable SQLite database"):
        await SqliteStore(path).open()
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        await SqliteStore(newer).open()


async def test_calls_before_open_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SqliteStore(tmp_path / "store.db").commit([PutResource(VS, doc("a"))])


def test_store_location_from_flags(tmp_path: Path) -> None:
    in_dir = locate_store(None, tmp_path)
    assert in_dir.url == f"sqlite:///{tmp_path.resolve() / 'store.db'}"
    assert locate_store(None, None).url == "memory"
    explicit = locate_store(f"sqlite:///{tmp_path}/x.db", tmp_path)
    assert explicit.url == f"sqlite:///{tmp_path.resolve() / 'x.db'}"
    relative = locate_store("sqlite:///rel/x.db", None)
    assert relative.url == f"sqlite:///{(Path.cwd() / 'rel' / 'x.db').resolve()}"
    with pytest.raises(StoreLocationError, match="etcd store is not supported yet"):
        locate_store("etcd://127.0.0.1:2379", None)
    with pytest.raises(StoreLocationError, match="expected sqlite:///FILE"):
        locate_store("postgres://x", None)
    with pytest.raises(StoreLocationError, match="name a file"):
        locate_store("sqlite:///", None)
