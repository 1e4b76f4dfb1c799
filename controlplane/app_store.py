"""The control plane's start from its store: resources and registrations loaded before
anything is served, so a restart shows clients no spurious deletion."""

from __future__ import annotations

import time

import structlog

from controlplane.layers import Layers, read_files
from controlplane.registration_store import RegistrationJournal, restore
from controlplane.registry import Registry
from controlplane.store import Contents, Store

log = structlog.get_logger(__name__)


async def load_store(
    store: Store, registry: Registry, journal: RegistrationJournal
) -> tuple[Layers, Contents]:
    """Open ``store`` (StoreError); put its registrations in ``registry`` with the TTL
    they had left; return its resources as the stored layer (no files yet), and all it
    held (the CA and revoked tokens, for :class:`controlplane.ca.Security`)."""
    if not store.persistent:
        log.warning(
            "store_in_memory",
            detail="nothing outlives this process: applied config and registrations are "
            "lost on restart; give --data-dir DIR (or --store sqlite:///FILE) to keep them",
        )
    contents = await store.open()  # StoreError
    alive, dropped = restore(contents.registrations, time.time())
    if alive:
        registry.restore(alive)
        log.info("registrations_restored", count=len(alive), store=store.url)
    if dropped:
        journal.removed(dropped)
    stored = {resource.key: resource for resource in contents.resources}
    return Layers(read_files(None), stored, contents.revision), contents


def store_status(store: Store, layers: Layers, loaded: bool) -> dict[str, object]:
    """The store part of ``GET /v1/config``."""
    return {
        "url": store.url,
        "persistent": store.persistent,
        "loaded": loaded,
        "problem": store.problem,
        "revision": layers.revision,
        "resources": len(layers.stored),
    }
