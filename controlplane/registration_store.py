"""Registrations kept in the store, so a restarted control plane still serves them.

:class:`RegistrationJournal` is the registry's journal: it turns each registration,
heartbeat and removal into a pending store write, and one background task writes them
(coalesced: a burst of heartbeats is one transaction) moments later. ``flush`` writes
what is pending (at shutdown). Expiries are kept as wall-clock times, so a registration
restored after a restart lives for what was left of its TTL, and the heartbeats of its
workload, with the same id, keep it alive on the new process.

:func:`restore` turns stored records back into workloads, each re-validated as a new
registration would be; a record that no longer validates is dropped (and logged).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from controlplane.model import Locality, RegisteredWorkload
from controlplane.registry import RegistrationRejected, RegistrationRequest, validate
from controlplane.store import Store, StoredRegistration, StoreError

log = structlog.get_logger(__name__)

COALESCE_S = 0.05
RETRY_S = 1.0


def workload_record(workload: RegisteredWorkload) -> dict[str, Any]:
    """A registration as the store keeps it (JSON)."""
    return {
        "service": workload.service,
        "address": workload.address,
        "ports": {str(sp): tp for sp, tp in sorted(workload.ports.items())},
        "labels": dict(workload.labels),
        "locality": workload.locality.as_dict(),
        "weight": workload.weight,
        "ttl_seconds": workload.ttl_s,
        "namespace": workload.namespace,
        **({"identity": workload.identity} if workload.identity else {}),
    }


def workload_from_record(workload_id: str, record: Any) -> RegisteredWorkload:
    """The workload a record stands for; raises RegistrationRejected when it is not valid."""
    if not isinstance(record, dict):
        raise RegistrationRejected("record", "not a JSON object")
    try:
        locality = record["locality"]
        ports = {int(port): target for port, target in record["ports"].items()}
        request = RegistrationRequest(
            service=record["service"],
            address=record["address"],
            ports=ports,
            labels=record["labels"],
            locality=Locality(locality["region"], locality["zone"], locality["sub_zone"]),
            weight=record["weight"],
            ttl_s=record["ttl_seconds"],
            namespace=record["namespace"],
            id=workload_id,
            identity=record.get("identity"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistrationRejected("record", f"malformed: {exc!r}") from exc
    return validate(request)


def restore(
    stored: Iterable[StoredRegistration], now: float
) -> tuple[list[tuple[RegisteredWorkload, float]], list[str]]:
    """(workload, seconds left) for each stored registration still valid and alive, and
    the ids of those to drop."""
    alive: list[tuple[RegisteredWorkload, float]] = []
    dropped: list[str] = []
    for registration in stored:
        left = registration.expires_at - now
        try:
            workload = workload_from_record(registration.id, registration.record)
        except RegistrationRejected as exc:
            log.warning("stored_registration_dropped", id=registration.id, error=str(exc))
            dropped.append(registration.id)
            continue
        if left <= 0:
            dropped.append(registration.id)
            continue
        alive.append((workload, min(left, workload.ttl_s)))
    return alive, dropped


class RegistrationJournal:
    """Write-behind of registry changes to the store (the registry's ``journal``)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._pending: dict[str, StoredRegistration | None] = {}  # None: delete
        self._touched: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- the registry's calls (on the event loop, never blocking) ------------------

    def registered(self, workload: RegisteredWorkload, ttl_s: float) -> None:
        expires_at = self._clock() + ttl_s
        self._pending[workload.id] = StoredRegistration(
            workload.id, workload_record(workload), expires_at
        )
        self._touched.pop(workload.id, None)
        self._changed()

    def refreshed(self, workload_id: str, ttl_s: float) -> None:
        expires_at = self._clock() + ttl_s
        pending = self._pending.get(workload_id)
        if pending is not None:
            self._pending[workload_id] = StoredRegistration(workload_id, pending.record, expires_at)
        elif workload_id not in self._pending:
            self._touched[workload_id] = expires_at
        self._changed()

    def removed(self, workload_ids: Sequence[str]) -> None:
        for workload_id in workload_ids:
            self._pending[workload_id] = None
            self._touched.pop(workload_id, None)
        self._changed()

    def _changed(self) -> None:
        self._idle.clear()
        self._wakeup.set()

    # --- writing ------------------------------------------------------------------

    async def run(self) -> None:
        """Write pending changes until cancelled (then :meth:`flush` what is left)."""
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(COALESCE_S)
            self._wakeup.clear()
            if not await self._write():
                await asyncio.sleep(RETRY_S)
                self._wakeup.set()

    async def flush(self) -> bool:
        """Write everything pending now; False when the store failed (logged)."""
        return await self._write()

    async def _write(self) -> bool:
        pending, touched = self._pending, self._touched
        self._pending, self._touched = {}, {}
        put = [r for r in pending.values() if r is not None]
        deleted = [wid for wid, r in pending.items() if r is None]
        try:
            await self._store.save_registrations(put, deleted)
            await self._store.touch_registrations(touched)
        except BaseException as exc:
            # Write it again later; changes made while we were writing are newer and win.
            self._pending = {**pending, **self._pending}
            self._touched = {**touched, **self._touched}
            if not isinstance(exc, StoreError):
                raise
            log.error("registration_store_write_failed", error=str(exc), pending=len(pending))
            return False
        if not self._pending and not self._touched:
            self._idle.set()
        return True

    async def wait_idle(self) -> None:
        """Until nothing is pending (tests, status)."""
        await self._idle.wait()
