"""Workloads that announce themselves at run time, kept alive by heartbeats.

A registration lives for its TTL; each heartbeat grants a fresh TTL; a sweep
(:meth:`Registry.run_expiry`, an asyncio task) removes the ones that lapsed.
Every change to the set of workloads calls ``on_change`` with the new
:meth:`Registry.snapshot`, which is how the app feeds the xDS service.

A registration is validated as a whole before anything is stored: a bad one
raises :class:`RegistrationRejected` naming the field, and the registry is
left exactly as it was. ``admission`` (optional) then sees the workloads the
registry would hold and may refuse them the same way: the control plane uses
it to refuse a registration its translation could not serve. ``journal``
(optional) is told of every registration, heartbeat and removal, to keep them
in the store across restarts; :meth:`Registry.restore` puts them back. The
registry is used from one event loop thread.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import structlog

from controlplane.addresses import is_dns_label, is_dns_name, parse_ip
from controlplane.event_wait import wait_event
from controlplane.model import EMPTY, NO_LOCALITY, Locality, RegisteredWorkload
from controlplane.registry_order import OrderedWorkloads
from meshlib.security.identity import SpiffeId

log = structlog.get_logger(__name__)

DEFAULT_TTL_S = 30.0
MIN_TTL_S = 1.0
MAX_TTL_S = 3600.0
# Keeps the per-locality weight sum that EDS carries (a uint32) far from overflow.
MAX_WEIGHT = 1_000_000
MAX_LABELS = 64
MAX_LOCALITY_PART = 128
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

Clock = Callable[[], float]
ChangeCallback = Callable[[tuple[RegisteredWorkload, ...]], None]


class AdmissionCheck(Protocol):
    """Raises RegistrationRejected when the registry must not hold ``workloads``: all it
    would hold, ``added`` in place of ``replaced`` (the same id, or None)."""

    def __call__(
        self,
        workloads: tuple[RegisteredWorkload, ...],
        *,
        added: RegisteredWorkload,
        replaced: RegisteredWorkload | None,
    ) -> None: ...


class Journal(Protocol):
    """Told of every change, to keep registrations across restarts (must not block)."""

    def registered(self, workload: RegisteredWorkload, ttl_s: float) -> None:
        """``workload`` is held for ``ttl_s`` from now (new, or changed)."""

    def refreshed(self, workload_id: str, ttl_s: float) -> None:
        """A heartbeat (or an unchanged re-registration) granted ``ttl_s`` from now."""

    def removed(self, workload_ids: Sequence[str]) -> None:
        """Deregistered or expired."""


class RegistryError(Exception):
    """Base of the registry's errors."""


class RegistrationRejected(RegistryError):
    """A registration failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownRegistration(RegistryError):
    """No live registration has this id (never made, deregistered or expired)."""

    def __init__(self, workload_id: str) -> None:
        super().__init__(
            f"no live registration with id {workload_id!r} (expired or never made): register again"
        )
        self.workload_id = workload_id


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """What a caller asks for; ``None`` means "use the default".

    ``locality`` is the three xDS fields, or Istio's ``region/zone/subzone``
    string (no empty part), as the admin API and older clients send it."""

    service: str
    address: str
    ports: Mapping[int, int]
    labels: Mapping[str, str] = field(default_factory=dict)
    locality: Locality | str = NO_LOCALITY
    weight: int = 1
    ttl_s: float | None = None
    namespace: str = "default"
    id: str | None = None
    identity: str | None = None  # the proven SPIFFE ID (secure address), else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegistrationRejected(where, f"port must be an integer, got {value!r}")
    if not 1 <= value <= 65535:
        raise RegistrationRejected(where, f"port {value} is outside 1..65535")
    return value


def _check_locality(value: object) -> Locality:
    """Each of region, zone and sub_zone is optional, as in xDS and gRPC bootstraps."""
    if isinstance(value, str):
        parts = value.split("/")
        if value and (len(parts) > 3 or not all(parts)):
            raise RegistrationRejected(
                "locality",
                f"{value!r} is not 'region', 'region/zone' or 'region/zone/subzone' "
                "(give region, zone and sub_zone as fields for any other combination)",
            )
        value = Locality.from_path(value)
    if not isinstance(value, Locality):
        raise RegistrationRejected("locality", f"expected region, zone and sub_zone: {value!r}")
    for name in ("region", "zone", "sub_zone"):
        part = getattr(value, name)
        if not isinstance(part, str):
            raise RegistrationRejected(f"locality.{name}", f"expected a string, got {part!r}")
        if (
            len(part) > MAX_LOCALITY_PART
            or not part.isprintable()
            or part != part.strip()
            or "/" in part
        ):
            raise RegistrationRejected(
                f"locality.{name}",
                f"{part!r} must be at most {MAX_LOCALITY_PART} printable characters, "
                "no '/' and no spaces around them",
            )
    return value


def validate(
    request: RegistrationRequest,
    *,
    default_ttl_s: float = DEFAULT_TTL_S,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> RegisteredWorkload:
    """Check every field of ``request``; return the workload to store or raise."""
    service = request.service
    if not isinstance(service, str) or not is_dns_name(service):
        raise RegistrationRejected(
            "service", f"{service!r} is not a lower-case DNS name such as 'sessions'"
        )
    ip = parse_ip(request.address) if isinstance(request.address, str) else None
    if ip is None:
        raise RegistrationRejected("address", f"{request.address!r} is not an IP address")
    if ip.is_unspecified or ip.is_multicast:
        raise RegistrationRejected("address", f"{request.address} cannot receive calls")
    if not isinstance(request.ports, Mapping) or not request.ports:
        raise RegistrationRejected("ports", "at least one service port -> target port is required")
    ports = {
        _check_port(sp, "ports"): _check_port(tp, f"ports[{sp}]")
        for sp, tp in request.ports.items()
    }
    if not isinstance(request.labels, Mapping) or len(request.labels) > MAX_LABELS:
        raise RegistrationRejected("labels", f"expected at most {MAX_LABELS} string pairs")
    for key, value in request.labels.items():
        if not isinstance(key, str) or not key:
            raise RegistrationRejected("labels", f"label keys must be non-empty strings: {key!r}")
        if not isinstance(value, str):
            raise RegistrationRejected(f"labels[{key}]", f"value must be a string, got {value!r}")
    locality = _check_locality(request.locality)
    if not _is_int(request.weight) or not 1 <= request.weight <= MAX_WEIGHT:
        raise RegistrationRejected("weight", f"{request.weight!r} is outside 1..{MAX_WEIGHT}")
    ttl_s = default_ttl_s if request.ttl_s is None else request.ttl_s
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, (int, float))
        or not math.isfinite(ttl_s)
        or not MIN_TTL_S <= ttl_s <= MAX_TTL_S
    ):
        raise RegistrationRejected("ttl_seconds", f"{ttl_s!r} is outside {MIN_TTL_S}..{MAX_TTL_S}")
    if not isinstance(request.namespace, str) or not is_dns_label(request.namespace):
        raise RegistrationRejected(
            "namespace", f"{request.namespace!r} is not a lower-case DNS label"
        )
    if request.identity is not None:
        try:
            SpiffeId.parse(request.identity)
        except ValueError as exc:
            raise RegistrationRejected("identity", str(exc)) from exc
    workload_id = new_id() if request.id is None else request.id
    if not isinstance(workload_id, str) or not _ID.match(workload_id):
        raise RegistrationRejected(
            "id", f"{workload_id!r} must be 1-128 of A-Z a-z 0-9 . _ : - (no leading punctuation)"
        )
    return RegisteredWorkload(
        id=workload_id,
        service=service,
        address=str(ip),
        ports=MappingProxyType(ports),
        labels=MappingProxyType(dict(request.labels)) if request.labels else EMPTY,
        locality=locality,
        weight=request.weight,
        ttl_s=float(ttl_s),
        namespace=request.namespace,
        identity=request.identity,
    )


class Registry:
    """The live registrations, keyed by id, each with an expiry deadline."""

    def __init__(
        self,
        *,
        on_change: ChangeCallback | None = None,
        clock: Clock = time.monotonic,
        default_ttl_s: float = DEFAULT_TTL_S,
        admission: AdmissionCheck | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.on_change = on_change
        self.admission = admission
        self.journal = journal
        self._clock = clock
        self._default_ttl_s = default_ttl_s
        self._workloads: dict[str, RegisteredWorkload] = {}
        self._deadlines: dict[str, float] = {}
        self._order = OrderedWorkloads()
        self._snapshot: tuple[RegisteredWorkload, ...] = ()
        self._wakeup = asyncio.Event()
        self._next_sweep = math.inf  # when the expiry task sweeps next (clock time)

    def register(self, request: RegistrationRequest) -> RegisteredWorkload:
        """Add or replace (same id) a workload; raises RegistrationRejected."""
        workload = validate(request, default_ttl_s=self._default_ttl_s)
        previous = self._workloads.get(workload.id)
        if previous != workload and self.admission is not None:
            candidate = self._order.with_put(workload, previous)
            self.admission(candidate, added=workload, replaced=previous)
        if previous != workload:
            self._order.put(workload, previous)
        self._workloads[workload.id] = workload
        self._deadlines[workload.id] = deadline = self._clock() + workload.ttl_s
        self._wake_by(deadline)
        if self.journal is not None:
            if previous == workload:
                self.journal.refreshed(workload.id, workload.ttl_s)
            else:
                self.journal.registered(workload, workload.ttl_s)
        log.info(
            "workload_registered",
            id=workload.id,
            service=workload.service,
            address=workload.address,
            replaced=previous is not None,
        )
        if previous != workload:
            self._changed()
        return workload

    def heartbeat(self, workload_id: str) -> float:
        """Grant a fresh TTL; returns it. Raises UnknownRegistration."""
        self._check_alive(workload_id)
        ttl_s = self._workloads[workload_id].ttl_s
        self._deadlines[workload_id] = self._clock() + ttl_s
        if self.journal is not None:
            self.journal.refreshed(workload_id, ttl_s)
        return ttl_s

    def deregister(self, workload_id: str) -> bool:
        """Remove now; True when it was registered. Unknown ids are not an error."""
        removed = self._workloads.pop(workload_id, None)
        if removed is None:
            return False
        self._order.remove(removed)
        del self._deadlines[workload_id]
        if self.journal is not None:
            self.journal.removed([workload_id])
        log.info("workload_deregistered", id=workload_id)
        self._changed()
        return True

    def restore(self, workloads: Iterable[tuple[RegisteredWorkload, float]]) -> None:
        """Hold workloads kept from before a restart, each for the seconds it had left
        (no admission check, no journal: they are the state being restored)."""
        now = self._clock()
        for workload, left_s in workloads:
            self._order.put(workload, self._workloads.get(workload.id))
            self._workloads[workload.id] = workload
            self._deadlines[workload.id] = now + left_s
        self._wakeup.set()
        self._changed()

    def follow(
        self, put: Iterable[tuple[RegisteredWorkload, float]], deleted: Iterable[str]
    ) -> bool:
        """Mirror registrations another replica made, renewed or removed (each held for the
        seconds given; no admission check, no journal: the store has them already).
        Notifies ``on_change`` only when the workloads changed; True then."""
        now = self._clock()
        changed = False
        for workload, left_s in put:
            previous = self._workloads.get(workload.id)
            if previous != workload:
                changed = True
                self._order.put(workload, previous)
            self._workloads[workload.id] = workload
            self._deadlines[workload.id] = now + left_s
            self._wake_by(now + left_s)
        for workload_id in deleted:
            removed = self._workloads.pop(workload_id, None)
            if removed is not None:
                self._order.remove(removed)
                del self._deadlines[workload_id]
                changed = True
        if changed:
            self._changed()
        return changed

    def get(self, workload_id: str) -> RegisteredWorkload | None:
        """The live registration with this id, if any."""
        return self._workloads.get(workload_id)

    def remaining_ttl(self, workload_id: str) -> float | None:
        """Seconds until the registration expires, or None when it is not live."""
        deadline = self._deadlines.get(workload_id)
        if deadline is None:
            return None
        return max(0.0, deadline - self._clock())

    def snapshot(self) -> tuple[RegisteredWorkload, ...]:
        """All live workloads, ordered by (namespace, service, id)."""
        return self._snapshot

    def sweep(self) -> tuple[str, ...]:
        """Remove every expired registration now; returns their ids."""
        now = self._clock()
        expired = tuple(sorted(wid for wid, dl in self._deadlines.items() if dl <= now))
        for wid in expired:
            workload = self._workloads.pop(wid)
            self._order.remove(workload)
            del self._deadlines[wid]
            log.info("workload_expired", id=wid, service=workload.service, ttl_s=workload.ttl_s)
        if expired:
            if self.journal is not None:
                self.journal.removed(expired)
            self._changed()
        return expired

    async def run_expiry(self, *, max_interval_s: float = 1.0) -> None:
        """Sweep until cancelled, waking at the next deadline (or every ``max_interval_s``)."""
        while True:
            self.sweep()
            self._wakeup.clear()
            delay = max_interval_s
            if self._deadlines:
                soonest = min(self._deadlines.values()) - self._clock()
                delay = min(max_interval_s, max(0.01, soonest))
            self._next_sweep = self._clock() + delay
            await wait_event(self._wakeup, delay)

    def _wake_by(self, deadline: float) -> None:
        """Have the expiry task sweep by ``deadline`` (it sleeps until its next sweep)."""
        if deadline < self._next_sweep:
            self._wakeup.set()

    def _check_alive(self, workload_id: str) -> None:
        deadline = self._deadlines.get(workload_id)
        if deadline is None:
            raise UnknownRegistration(workload_id)
        if deadline <= self._clock():
            self.sweep()
            raise UnknownRegistration(workload_id)

    def _changed(self) -> None:
        self._snapshot = self._order.snapshot()
        if self.on_change is None:
            return
        try:
            self.on_change(self._snapshot)
        except Exception:
            log.exception("registry_on_change_failed")
