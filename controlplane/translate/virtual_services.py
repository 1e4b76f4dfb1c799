"""Which VirtualService routes a service, and which of its rules apply to a port.

A VirtualService host is a service host: the config parser refuses wildcard
hosts and a second VirtualService for a host, so the first one naming the
host is the only one. A rule applies to a port (and caller)
when one of its match blocks names no port or that port and admits the caller
(its ``sourceLabels`` / ``sourceNamespace``, see :mod:`.source_match`); only
those blocks are kept. A rule without match blocks applies to every port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.traffic_model import HTTPMatchRequest, HTTPRoute, VirtualService
from controlplane.translate.source_match import Caller


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
    return next((vs for vs in virtual_services if host in vs.hosts), None)


def rules_for_port(vs: VirtualService, port: int, caller: Caller | None) -> list[PortRule]:
    """The rules for ``port`` as ``caller`` gets them (None: any caller, every block)."""
    chosen: list[PortRule] = []
    for index, rule in enumerate(vs.http):
        if not rule.match:
            chosen.append(PortRule(index, rule, (None,)))
            continue
        blocks = tuple(
            b
            for b in rule.match
            if (b.port is None or b.port == port) and (caller is None or caller.admits(b))
        )
        if blocks:
            chosen.append(PortRule(index, rule, blocks))
    return chosen
