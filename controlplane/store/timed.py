"""A store whose every call is timed, for ``mesh_controlplane_store_latency_seconds``.

    store = TimedStore(locate_store(...), metrics.store_call)   # observe(op, seconds)

It wraps any :class:`Store` (SQLite, etcd) rather than living in each, so the
measure is the same for all: the wall time of the call as the control plane
waits on it, failures included.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from controlplane.store.base import (
    Cancel,
    ChangeCallback,
    Contents,
    RevokedToken,
    Store,
    StoredCa,
    StoredRegistration,
    Write,
)

T = TypeVar("T")


class TimedStore(Store):
    """``inner`` with the time of each call given to ``observe(op, seconds)``."""

    def __init__(self, inner: Store, observe: Callable[[str, float], None]) -> None:
        super().__init__(inner.origin)
        self.inner = inner
        self._observe = observe

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def persistent(self) -> bool:
        return self.inner.persistent

    @property
    def problem(self) -> str | None:
        return self.inner.problem

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        finally:
            self._observe(op, time.perf_counter() - start)

    async def open(self) -> Contents:
        return await self._timed("open", self.inner.open())

    async def close(self) -> None:
        await self.inner.close()  # not a call clients wait on

    async def commit(self, writes: Sequence[Write]) -> int:
        return await self._timed("commit", self.inner.commit(writes))

    async def save_registrations(
        self, put: Sequence[StoredRegistration], deleted: Sequence[str]
    ) -> None:
        await self._timed("save_registrations", self.inner.save_registrations(put, deleted))

    async def touch_registrations(self, expiries: Mapping[str, float]) -> None:
        await self._timed("touch_registrations", self.inner.touch_registrations(expiries))

    async def create_ca(self, ca: StoredCa) -> StoredCa:
        return await self._timed("create_ca", self.inner.create_ca(ca))

    async def revoke_tokens(self, revoked: Sequence[RevokedToken]) -> None:
        await self._timed("revoke_tokens", self.inner.revoke_tokens(revoked))

    def watch(self, callback: ChangeCallback) -> Cancel:
        return self.inner.watch(callback)
