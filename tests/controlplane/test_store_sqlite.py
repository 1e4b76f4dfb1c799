"""What only the SQLite store does: one holder per file, memory, unusable files, and the
--store / --data-dir choice (the contract every store keeps: test_store_conformance.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.store import (
    PutResource,
    ResourceKey,
    SqliteStore,
    StoreError,
    StoreLocationError,
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


def test_store_location_from_flags(tmp_path: Path) -> None:
    in_dir = locate_store(None, tmp_path)
    assert in_dir.url == f"sqlite:///{tmp_path.resolve() / 'store.db'}"
    assert locate_store(None, None).url == "memory"
    explicit = locate_store(f"sqlite:///{tmp_path}/x.db", tmp_path)
    assert explicit.url == f"sqlite:///{tmp_path.resolve() / 'x.db'}"
    relative = locate_store("sqlite:///rel/x.db", None)
    assert relative.url == f"sqlite:///{(Path.cwd() / 'rel' / 'x.db').resolve()}"
    etcd = locate_store("etcd://127.0.0.1:2379,[::1]:2380", None)
    assert etcd.url == "etcd://127.0.0.1:2379,[::1]:2380"
    with pytest.raises(StoreLocationError, match=r"'127.0.0.1' is not HOST:PORT"):
        locate_store("etcd://127.0.0.1", None)
    with pytest.raises(StoreLocationError, match="expected sqlite:///FILE"):
        locate_store("postgres://x", None)
    with pytest.raises(StoreLocationError, match="name a file"):
        locate_store("sqlite:///", None)
