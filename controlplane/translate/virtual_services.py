"""Which VirtualService routes a service, and which of its rules apply to a port.

A VirtualService host is a service host, ``*`` or ``*.suffix``; the most
specific one wins (exact, then the longest wildcard). Two VirtualServices
equally specific for the same host are an error (Istio would pick one by
creation time, which a config file does not have). A rule applies to a port
when one of its match blocks names no port or that port (only those blocks
are kept); a rule without match blocks applies to every port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.traffic_model import HTTPMatchRequest, HTTPRoute, VirtualService
from controlplane.translate.errors import TranslationError


@dataclass(frozen=True, slots=True)
class PortRule:
    """A rule with the match blocks that apply to one port (None: catch-all)."""

    index: int  # position in spec.http, for error messages
    rule: HTTPRoute
    blocks: tuple[HTTPMatchRequest | None, ...]


def virtual_service_origin(vs: VirtualService) -> str:
    where = f" ({vs.source})" if vs.source is not None else ""
    return f"VirtualService {vs.namespace}/{vs.name}{where}"


def virtual_service_for(
    virtual_services: Iterable[VirtualService], host: str
) -> VirtualService | None:
    best: VirtualService | None = None
    best_rank = -1
    for vs in virtual_services:
        rank = max((_rank(pattern, host) for pattern in vs.hosts), default=-1)
        if rank < 0 or rank < best_rank:
            continue
        if rank == best_rank and best is not None:
            raise TranslationError(
                f"{virtual_service_origin(best)} and {virtual_service_origin(vs)} "
                f"both route host {host!r}; keep one VirtualService per host"
            )
        best, best_rank = vs, rank
    return best


def rules_for_port(vs: VirtualService, port: int) -> list[PortRule]:
    chosen: list[PortRule] = []
    for index, rule in enumerate(vs.http):
        if not rule.match:
            chosen.append(PortRule(index, rule, (None,)))
            continue
        blocks = tuple(b for b in rule.match if b.port is None or b.port == port)
        if blocks:
            chosen.append(PortRule(index, rule, blocks))
    return chosen


def _rank(pattern: str, host: str) -> int:
    """-1: no match; higher is more specific (exact beats every wildcard)."""
    if pattern == host:
        return 1_000_000
    if pattern == "*":
        return 0
    if pattern.startswith("*.") and host.endswith(pattern[1:]):
        return len(pattern)
    return -1
