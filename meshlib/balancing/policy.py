"""Load-balancing policies by name, as CDS names them.

A policy turns the localities of the chosen priority (usable endpoints only)
into a :class:`~meshlib.balancing.picker.Picker`. Built-in policies live one
per module and are imported on first use; add one by writing the module with a
module-level ``POLICY`` and listing it in ``_BUILTIN``, or at run time with
:func:`register_policy`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Protocol

from meshlib.balancing.picker import Picker
from meshlib.xds_client.resources import LocalityEndpoints

_BUILTIN = {
    "round_robin": "meshlib.balancing.round_robin",
}

_lock = threading.Lock()
_policies: dict[str, LbPolicy] = {}


class LbPolicy(Protocol):
    """Builds pickers for one LB policy."""

    name: str

    def build(self, cluster: str, localities: Sequence[LocalityEndpoints]) -> Picker:
        """``localities`` is non-empty and each holds at least one usable endpoint."""
        ...


class UnknownPolicyError(ValueError):
    """No LB policy is registered under the requested name."""


def register_policy(policy: LbPolicy) -> None:
    """Make ``policy`` available under ``policy.name`` (replacing a previous one)."""
    with _lock:
        _policies[policy.name] = policy


def available_policies() -> list[str]:
    with _lock:
        return sorted(set(_BUILTIN) | set(_policies))


def get_policy(name: str) -> LbPolicy:
    """The policy registered as ``name``; raises UnknownPolicyError naming the known ones."""
    with _lock:
        found = _policies.get(name)
    if found is not None:
        return found
    module_name = _BUILTIN.get(name)
    if module_name is None:
        raise UnknownPolicyError(
            f"unknown load-balancing policy {name!r}; known: {', '.join(available_policies())}"
        )
    policy: LbPolicy = importlib.import_module(module_name).POLICY
    register_policy(policy)
    return policy
