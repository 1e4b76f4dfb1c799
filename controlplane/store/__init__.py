"""store: what the control plane keeps across restarts (applied resources, registrations).

    store = locate_store("sqlite:///mesh.db", data_dir=None)   # or SqliteStore(path | None)
    contents = await store.open()          # everything, as of contents.revision
    revision = await store.commit([PutResource(key, document, expected_version=ABSENT)])
    cancel = store.watch(on_change)        # every later commit, as a Change
    await store.close()

The contract is :class:`Store` (:mod:`.base`); :mod:`.sqlite` and :mod:`.etcd` implement it.
"""

from __future__ import annotations

from controlplane.store.base import (
    ABSENT,
    Change,
    Contents,
    DeleteResource,
    PutResource,
    ResourceKey,
    RevokedToken,
    Store,
    StoredCa,
    StoredRegistration,
    StoredResource,
    StoreError,
    StoreLocationError,
    VersionConflict,
    Write,
)
from controlplane.store.etcd import EtcdStore
from controlplane.store.locate import locate_store
from controlplane.store.sqlite import SqliteStore

__all__ = [
    "ABSENT",
    "Change",
    "Contents",
    "DeleteResource",
    "EtcdStore",
    "PutResource",
    "ResourceKey",
    "RevokedToken",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreLocationError",
    "StoredCa",
    "StoredRegistration",
    "StoredResource",
    "VersionConflict",
    "Write",
    "locate_store",
]
