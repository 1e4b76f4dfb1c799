"""The embedded store: one SQLite file (stdlib ``sqlite3``), or memory for a store that
keeps nothing.

The file is held by one control plane at a time (an exclusive ``flock`` on ``FILE.lock``,
which names the holder's pid): two processes serving from one file would expire each
other's registrations. Commits are SQLite transactions (WAL journal, ``synchronous=FULL``:
a commit the API acknowledged survives a crash). Calls run on a worker thread, one at a
time, so the event loop never waits on the disk. The file holds the CA key: it is created
(and kept) readable by its owner only, 0600; SQLite gives its WAL files the same mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import structlog

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
    VersionConflict,
    Write,
)

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS resources (kind TEXT NOT NULL, namespace TEXT NOT NULL, "
    "name TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL, "
    "PRIMARY KEY (kind, namespace, name))",
    "CREATE TABLE IF NOT EXISTS registrations (id TEXT PRIMARY KEY, record TEXT NOT NULL, "
    "expires_at REAL NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0)",
    "CREATE TABLE IF NOT EXISTS ca (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "key_pem TEXT NOT NULL, chain_pem TEXT NOT NULL, trust_domain TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS revoked_tokens (id TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
)
_T = TypeVar("_T")


def encode(document: Mapping[str, Any]) -> str:
    """Canonical JSON: equal documents are equal strings."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


class SqliteStore(Store):
    """``path`` None: an in-memory database, gone with the process."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(origin or uuid.uuid4().hex)
        self.path = Path(path).resolve() if path is not None else None
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None
        self._thread_lock = threading.Lock()

    @property
    def url(self) -> str:
        return "memory" if self.path is None else f"sqlite:///{self.path}"

    @property
    def persistent(self) -> bool:
        return self.path is not None

    async def open(self) -> Contents:
        return await asyncio.to_thread(self._open)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    async def commit(self, writes: Sequence[Write]) -> int:
        revision, change = await self._run(self._commit, list(writes))
        if change is not None:
            self._announce(change)
        return revision

    async def save_registrations(
        self, put: Sequence[StoredRegistration], deleted: Sequence[str]
    ) -> None:
        if not put and not deleted:
            return
        await self._run(self._save_registrations, list(put), list(deleted))
        self._announce(
            Change(self.origin, registrations_put=tuple(put), registrations_deleted=tuple(deleted))
        )

    async def touch_registrations(self, expiries: Mapping[str, float]) -> None:
        if expiries:
            await self._run(self._touch_registrations, dict(expiries))

    async def create_ca(self, ca: StoredCa) -> StoredCa:
        return await self._run(self._create_ca, ca)

    async def revoke_tokens(self, revoked: Sequence[RevokedToken]) -> None:
        if not revoked:
            return
        await self._run(self._revoke_tokens, list(revoked))
        self._announce(Change(self.origin, tokens_revoked=tuple(revoked)))

    # --- on the worker thread ---------------------------------------------------

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(self._locked, call, *args)

    def _locked(self, call: Callable[..., _T], *args: Any) -> _T:
        with self._thread_lock:
            if self._db is None:
                raise StoreError(f"store {self.url} is not open")
            try:
                return call(self._db, *args)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.url}: {exc}") from exc

    def _open(self) -> Contents:
        with self._thread_lock:
            if self._db is not None:
                raise StoreError(f"store {self.url} is already open")
            if self.path is not None:
                self._lock_file = _hold_lock(self.path)
            try:
                self._db = _connect(self.path)
                contents = _load(self._db, self._clock(), self.url)
            except BaseException:
                self._release()
                raise
        log.info(
            "store_opened",
            store=self.url,
            revision=contents.revision,
            resources=len(contents.resources),
            registrations=len(contents.registrations),
        )
        return contents

    def _close(self) -> None:
        with self._thread_lock:
            self._release()

    def _release(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def _commit(self, db: sqlite3.Connection, writes: list[Write]) -> tuple[int, Change | None]:
        keys = [write.key for write in writes]
        if len(set(keys)) != len(keys):
            raise StoreError("a commit writes each resource at most once")
        with _transaction(db):
            revision = _revision(db)
            if not writes:
                return revision, None
            for write in writes:
                _check_expected(db, write)
            revision += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))
            put: list[StoredResource] = []
            deleted: list[ResourceKey] = []
            for write in writes:
                if isinstance(write, PutResource):
                    db.execute(
                        "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?)",
                        (*write.key, revision, encode(write.document)),
                    )
                    put.append(StoredResource(write.key, write.document, revision))
                else:
                    db.execute(
                        "DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                        tuple(write.key),
                    )
                    deleted.append(write.key)
        change = Change(self.origin, revision, tuple(put), resources_deleted=tuple(deleted))
        return revision, change

    @staticmethod
    def _save_registrations(
        db: sqlite3.Connection, put: list[StoredRegistration], deleted: list[str]
    ) -> None:
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?)",
                [(r.id, encode(r.record), r.expires_at) for r in put],
            )
            db.executemany("DELETE FROM registrations WHERE id = ?", [(i,) for i in deleted])

    @staticmethod
    def _touch_registrations(db: sqlite3.Connection, expiries: dict[str, float]) -> None:
        with _transaction(db):
            db.executemany(
                "UPDATE registrations SET expires_at = ? WHERE id = ?",
                [(at, wid) for wid, at in expiries.items()],
            )

    @staticmethod
    def _create_ca(db: sqlite3.Connection, ca: StoredCa) -> StoredCa:
        with _transaction(db):
            db.execute(
                "INSERT OR IGNORE INTO ca VALUES (1, ?, ?, ?)",
                (ca.key_pem, ca.chain_pem, ca.trust_domain),
            )
            row = db.execute("SELECT key_pem, chain_pem, trust_domain FROM ca").fetchone()
        return StoredCa(*row)

    @staticmethod
    def _revoke_tokens(db: sqlite3.Connection, revoked: list[RevokedToken]) -> None:
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO revoked_tokens VALUES (?, ?)",
                [(r.id, r.expires_at) for r in revoked],
            )


def _hold_lock(path: Path) -> IO[str]:
    """Take ``PATH.lock`` for this process (kept until closed), or say who holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until close
    except OSError as exc:
        raise StoreError(f"store {path}: cannot create {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(
            f"store {path} is in use by another control plane (pid {holder}); stop it first, "
            "or give this one another --data-dir / --store"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _cannot_open(path: Path | None, exc: OSError) -> str:
    """Why the store file cannot be opened read-write; who owns it when that is why (a
    data dir used once as root, then by the service's own user)."""
    try:
        info = path.stat() if path is not None else None
    except OSError:
        info = None
    if info is None:
        return f"cannot create: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if exc.errno in (errno.EACCES, errno.EPERM) and info.st_uid != os.geteuid():
        return (
            f"cannot open for writing: {exc.strerror}: it belongs to uid {info.st_uid} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}) and this control plane runs as uid "
            f"{os.geteuid()}; chown it (and the folder) to the uid that runs the control plane"
        )
    return f"cannot open for writing: {exc.strerror}"


def _connect(path: Path | None) -> sqlite3.Connection:
    target = ":memory:" if path is None else str(path)
    try:
        if path is not None:  # it holds the CA key: owner only, whatever the umask
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(f"store {target}: {_cannot_open(path, exc)}") from exc
    try:
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"store {target}: cannot open: {exc}") from exc
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {target} has schema version {version}, newer than this control plane "
                f"reads ({SCHEMA_VERSION}): run a newer meshlib-xds"
            )
        if path is not None:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        with _transaction(db):
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"store {target}: not a usable SQLite database: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _revision(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def _check_expected(db: sqlite3.Connection, write: Write) -> None:
    row = db.execute(
        "SELECT version FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
        tuple(write.key),
    ).fetchone()
    actual = None if row is None else int(row[0])
    expected = write.expected_version
    if isinstance(write, DeleteResource) and actual is None:
        raise VersionConflict(write.key, expected, None)
    if expected is None:
        return
    if (actual or ABSENT) != expected:
        raise VersionConflict(write.key, expected, actual)


def _load(db: sqlite3.Connection, now: float, where: str) -> Contents:
    resources: list[StoredResource] = []
    rows = db.execute(
        "SELECT kind, namespace, name, version, document FROM resources ORDER BY version, "
        "kind, namespace, name"
    )
    for kind, namespace, name, version, text in rows:
        key = ResourceKey(kind, namespace, name)
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise StoreError(f"store {where}: {key} is not readable JSON: {exc}") from exc
        resources.append(StoredResource(key, document, int(version)))
    registrations: list[StoredRegistration] = []
    expired: list[str] = []
    for wid, text, expires_at in db.execute("SELECT id, record, expires_at FROM registrations"):
        if expires_at <= now:
            expired.append(wid)
            continue
        try:
            record = json.loads(text)
        except ValueError:
            log.warning("store_registration_unreadable", id=wid, store=where)
            expired.append(wid)
            continue
        registrations.append(StoredRegistration(wid, record, float(expires_at)))
    if expired:
        with _transaction(db):
            db.executemany("DELETE FROM registrations WHERE id = ?", [(i,) for i in expired])
    with _transaction(db):
        db.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (now,))
    revoked = tuple(
        RevokedToken(str(i), float(at))
        for i, at in db.execute("SELECT id, expires_at FROM revoked_tokens")
    )
    row = db.execute("SELECT key_pem, chain_pem, trust_domain FROM ca").fetchone()
    ca = None if row is None else StoredCa(*row)
    return Contents(_revision(db), tuple(resources), tuple(registrations), ca, revoked)
