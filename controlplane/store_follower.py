"""Following the other replicas: what another control plane committed to the shared
store (etcd) is put in force here, without being written again.

Each :class:`~controlplane.store.Change` from the store's feed whose origin is not this
control plane's store is applied to the stored layer (a resource is taken only when its
version is newer than the one held, so a late or repeated change moves nothing back) and
to the registry (:meth:`Registry.follow`: no journal, no admission check, the writer
checked). Nothing is pushed when nothing changed (a heartbeat only moves an expiry).

A mirrored registration is held until its stored expiry plus :data:`REMOTE_SLACK_S`, so
etcd's lease (which drops the key everywhere) normally ends it first, and a heartbeat
written by another replica a moment before the expiry is not raced by a local sweep.
A change that cannot be served here (it clashes with this replica's ``--config`` files,
or does not translate) is shown as the config error and the config in force stays.
Revoked join tokens go to ``on_revoked`` at once, even while starting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from controlplane.applied_config import ConfigHost
from controlplane.config import ConfigError
from controlplane.layers import Layers, compose
from controlplane.model import RegisteredWorkload
from controlplane.registration_store import workload_from_record
from controlplane.registry import RegistrationRejected, Registry
from controlplane.store import Change, ResourceKey, Store, StoredResource

log = structlog.get_logger(__name__)

REMOTE_SLACK_S = 2.0


class StoreFollower:
    """The store feed's callback: applies other replicas' commits to ``host`` and
    ``registry``."""

    def __init__(
        self,
        store: Store,
        host: ConfigHost,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
        on_revoked: Callable[[Change], None] | None = None,
    ) -> None:
        self._origin = store.origin
        self._on_revoked = on_revoked
        self._host = host
        self._registry = registry
        self._clock = clock
        self._held: list[Change] | None = []  # None once live

    def go_live(self) -> None:
        """Apply what came in while the control plane was starting, and follow from now."""
        held, self._held = self._held or [], None
        for change in held:
            self(change)

    def __call__(self, change: Change) -> None:
        if change.origin == self._origin:
            return  # this control plane's own commit: already in force
        if change.tokens_revoked and self._on_revoked is not None:
            self._on_revoked(change)
        if self._held is not None:
            self._held.append(change)  # the layers in force are not set yet
            return
        if change.registrations_put or change.registrations_deleted:
            self._follow_registrations(change)
        if change.resources_put or change.resources_deleted:
            self._follow_resources(change)

    def _follow_registrations(self, change: Change) -> None:
        now = self._clock()
        put: list[tuple[RegisteredWorkload, float]] = []
        for registration in change.registrations_put:
            try:
                workload = workload_from_record(registration.id, registration.record)
            except RegistrationRejected as exc:
                log.warning("remote_registration_ignored", id=registration.id, error=str(exc))
                continue
            left = registration.expires_at - now + REMOTE_SLACK_S
            if left > 0:
                put.append((workload, left))
        if self._registry.follow(put, change.registrations_deleted):
            log.info(
                "remote_registrations_followed",
                origin=change.origin,
                put=len(put),
                deleted=len(change.registrations_deleted),
            )

    def _follow_resources(self, change: Change) -> None:
        layers = self._host.layers()
        stored: dict[ResourceKey, StoredResource] = dict(layers.stored)
        moved = False
        for resource in change.resources_put:
            held = stored.get(resource.key)
            if held is None or held.version < resource.version:
                stored[resource.key] = resource
                moved = True
        for key in change.resources_deleted:
            held = stored.get(key)
            if held is not None and held.version < change.revision:
                del stored[key]
                moved = True
        if not moved:
            return
        followed = Layers(layers.files, stored, max(layers.revision, change.revision))
        try:
            config = compose(layers.files, stored)
            self._host.check_translation(config)
        except ConfigError as exc:
            log.error("remote_config_not_served", revision=change.revision, error=str(exc))
            self._host.install(followed, exc)
            return
        log.info("remote_config_followed", origin=change.origin, revision=change.revision)
        self._host.install(followed, config)
