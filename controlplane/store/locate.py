"""Which store a control plane uses, from ``--store`` and ``--data-dir``.

--store sqlite:///FILE       that SQLite file (``sqlite:///rel/x.db`` is relative to the
                             working folder, ``sqlite:////var/lib/x.db`` absolute)
--data-dir DIR               SQLite at ``DIR/store.db`` (when ``--store`` is not given)
neither                      memory: nothing outlives the process (logged at start)
--store etcd://HOST:PORT,... etcd, through any of these members (replicas share it)
"""

from __future__ import annotations

from pathlib import Path

from controlplane.store.base import Store, StoreLocationError
from controlplane.store.etcd import EtcdStore
from controlplane.store.sqlite import SqliteStore

STORE_FILE = "store.db"
SQLITE_PREFIX = "sqlite:///"
ETCD_PREFIX = "etcd://"


def locate_store(store: str | None, data_dir: Path | None) -> Store:
    """The store these flags name; raises StoreLocationError naming the flag."""
    if store is None:
        return SqliteStore(None if data_dir is None else data_dir / STORE_FILE)
    if store.startswith(SQLITE_PREFIX):
        file = store[len(SQLITE_PREFIX) :]
        if not file or file.endswith("/"):
            raise StoreLocationError(f"--store {store}: name a file, e.g. sqlite:///mesh.db")
        return SqliteStore(Path(file))
    if store.startswith(ETCD_PREFIX):
        return EtcdStore(etcd_endpoints(store))
    raise StoreLocationError(
        f"--store {store!r}: expected sqlite:///FILE or etcd://HOST:PORT[,HOST:PORT...]"
    )


def etcd_endpoints(store: str) -> list[str]:
    """The ``HOST:PORT`` members of an ``etcd://`` URL; StoreLocationError naming a bad one."""
    endpoints = store[len(ETCD_PREFIX) :].rstrip("/").split(",")
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or "/" in endpoint or not port.isdecimal() or not 0 < int(port) < 65536:
            raise StoreLocationError(
                f"--store {store}: {endpoint!r} is not HOST:PORT "
                "(expected etcd://HOST:PORT[,HOST:PORT...])"
            )
    return endpoints
