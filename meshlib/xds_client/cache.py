"""What the client knows about each subscribed resource: the config dump's source.

Per type: the last ACKed version and the last NACK. Per resource: the last good
model (kept across NACKs and disconnects: fail static), its version, status,
when it last changed and the last error. Owned by the client's work loop
thread; nothing here locks.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ResourceStatus(enum.Enum):
    REQUESTED = "REQUESTED"
    ACKED = "ACKED"
    NACKED = "NACKED"
    DOES_NOT_EXIST = "DOES_NOT_EXIST"


@dataclass
class CacheEntry:
    name: str
    resource: Any = None  # the last good model, None when there is none
    version: str = ""
    status: ResourceStatus = ResourceStatus.REQUESTED
    last_updated: float | None = None  # wall-clock seconds
    error: str | None = None

    def accept(self, resource: Any, version: str) -> bool:
        """Store a valid resource; return True if it differs from the cached one."""
        changed = bool(resource != self.resource)
        self.resource, self.version = resource, version
        self.status, self.error = ResourceStatus.ACKED, None
        self.last_updated = time.time()
        return changed

    def reject(self, error: str) -> None:
        """Record an invalid version; the last good resource stays."""
        self.status, self.error = ResourceStatus.NACKED, error
        self.last_updated = time.time()

    def remove(self) -> None:
        """The resource is gone (absent from SotW, or never arrived in time)."""
        self.resource, self.version = None, ""
        self.status, self.error = ResourceStatus.DOES_NOT_EXIST, None
        self.last_updated = time.time()


@dataclass(frozen=True)
class NackRecord:
    version: str
    nonce: str
    error: str
    time: float


@dataclass
class TypeCache:
    type_name: str
    acked_version: str = ""
    last_nack: NackRecord | None = None
    entries: dict[str, CacheEntry] = field(default_factory=dict)

    def entry(self, name: str) -> CacheEntry:
        found = self.entries.get(name)
        if found is None:
            found = self.entries[name] = CacheEntry(name)
        return found


class ResourceCache:
    """All TypeCaches, keyed by type URL."""

    def __init__(self) -> None:
        self._types: dict[str, TypeCache] = {}

    def of_type(self, type_url: str, type_name: str) -> TypeCache:
        found = self._types.get(type_url)
        if found is None:
            found = self._types[type_url] = TypeCache(type_name)
        return found

    def dump(self) -> dict[str, Any]:
        """A JSON-able view: per type name, versions, last NACK and every resource."""
        out: dict[str, Any] = {}
        for type_url, tc in sorted(self._types.items(), key=lambda kv: kv[1].type_name):
            nack = tc.last_nack
            out[tc.type_name] = {
                "type_url": type_url,
                "version": tc.acked_version,
                "last_nack": None
                if nack is None
                else {
                    "version": nack.version,
                    "nonce": nack.nonce,
                    "error": nack.error,
                    "time": _iso(nack.time),
                },
                "resources": [_entry_dump(e) for _, e in sorted(tc.entries.items())],
            }
        return out


def _entry_dump(entry: CacheEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "version": entry.version,
        "status": entry.status.value,
        "last_updated": _iso(entry.last_updated),
        "error": entry.error,
        "resource": None if entry.resource is None else to_jsonable(entry.resource),
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def to_jsonable(value: Any) -> Any:
    """Resource models (dataclasses, enums, tuples, maps, sets, bytes) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value
