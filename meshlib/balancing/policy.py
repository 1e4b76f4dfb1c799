"""Load-balancing policies by name, as CDS names them.

A policy turns the localities of one host set (a priority's healthy, degraded
or — in panic — all endpoints; or one locality of it for zone-aware routing)
into a :class:`~meshlib.balancing._hosts.HostPicker`. The priority and
locality layer above (locality.py) decides which host set a request uses.
Built-in policies live one per module and are imported on first use; add one
by writing the module with a module-level ``POLICY`` and listing it in
``_BUILTIN``, or at run time with :func:`register_policy`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from meshlib.balancing._hosts import BuildContext, HostPicker
from meshlib.balancing._schedule import WeightedSchedule
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints

_BUILTIN = {
    "round_robin": "meshlib.balancing._round_robin",
    "least_request": "meshlib.balancing._least_request",
    "random": "meshlib.balancing._random_pick",
    "ring_hash": "meshlib.balancing._ring_hash",
    "maglev": "meshlib.balancing._maglev",
    "pick_first": "meshlib.balancing._pick_first",
}

_lock = threading.Lock()
_policies: dict[str, LbPolicy] = {}


class LbPolicy(Protocol):
    """Builds host pickers for one LB policy."""

    name: str
    #: Picks depend on the request hash: one table per priority (no zone-aware split).
    hash_based: bool

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        """``localities`` is non-empty, each with at least one endpoint and a weight > 0
        (the effective locality weight). Raises ValueError for a config it cannot use."""
        ...


class UnknownPolicyError(ValueError):
    """No LB policy is registered under the requested name."""


class LocalityRotation:
    """Localities take turns by (effective) weight, exactly per cycle; then the inner picker."""

    __slots__ = ("_next",)

    def __init__(self, pickers: Sequence[HostPicker], weights: Sequence[int]) -> None:
        self._next = WeightedSchedule(pickers, weights).next

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        return self._next().choose(h, attempt)


def per_locality(
    localities: Sequence[LocalityEndpoints],
    build_one: Callable[[Sequence[Endpoint]], HostPicker],
) -> HostPicker:
    """One picker per locality, rotated by locality weight (one locality: itself)."""
    if len(localities) == 1:
        return build_one(localities[0].endpoints)
    return LocalityRotation(
        [build_one(loc.endpoints) for loc in localities], [loc.weight for loc in localities]
    )


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
