"""Refuse a reload that would take every ServiceEntry away from every client.

A config that validates can still be an accident: a folder emptied by a
half-finished sync, the last file deleted by mistake. Taking it would remove
every configured service from every client at once, so it needs the explicit
``--allow-empty-config``. A first load without services is fine (there is
nothing in force to lose, and services may come from registrations).
"""

from __future__ import annotations

from pathlib import Path

from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.model import MeshConfig

ALLOW_EMPTY_FLAG = "--allow-empty-config"
_NAMES_SHOWN = 5


def check_not_emptied(in_force: MeshConfig | None, new: MeshConfig, path: Path) -> None:
    """Raise :class:`ConfigError` when ``new`` has no ServiceEntry but ``in_force`` has."""
    if in_force is None or not in_force.service_entries or new.service_entries:
        return
    names = [f"{se.namespace}/{se.name}" for se in in_force.service_entries]
    shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
    message = (
        f"the change removes every ServiceEntry ({len(names)} in force: {shown}), which "
        f"would take every configured service away from every client: refused; where "
        f"that is meant, run the control plane with {ALLOW_EMPTY_FLAG}"
    )
    raise ConfigError([ConfigIssue(str(path), None, "", message)])
