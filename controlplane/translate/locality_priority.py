"""Locality priorities and weights for one client, as Istio computes them.

The client's locality is the node's bootstrap locality (region/zone/subzone);
its labels are the node metadata ``LABELS`` (Istio's key, see :mod:`.caller_node`).
Both sides also get Istio's topology labels from their locality
(``topology.kubernetes.io/region``, ``topology.kubernetes.io/zone``,
``topology.istio.io/subzone``) unless set, so ``failoverPriority`` can name them.

With ``localityLbSetting`` (or the mesh default, which is enabled):

* ``enabled: false``: every locality at priority 0, weighted by its endpoints;
* ``distribute``: for a client whose locality matches a ``from`` pattern, the
  localities matching each ``to`` pattern (in the order written) share that
  pattern's weight in proportion to their endpoint weights (rounded up);
  localities no ``to`` matches get no traffic (they are left out);
* otherwise, failover priorities -- only when the cluster has outlier
  detection, as Istio does: without it nothing ever marks the near endpoints
  unhealthy, so a lower priority would never be used. Default order: 0 = same
  region/zone/subzone, 1 = same region/zone, 2 = same region, 3 = other regions.
  ``failover[{from, to}]`` (for a client in region ``from``) keeps region ``to``
  at 3 and moves every other region to 4. ``failoverPriority`` label keys first
  split endpoints into label-matching tiers (an endpoint matching the client on
  the first k keys ranks above one matching fewer; ``key=value`` compares with
  that value instead of the client's); with ``failover`` also given, locality
  order then refines each tier.

Priorities are renumbered to run 0..N without gaps (gRPC rejects gaps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controlplane.destination_policy import EffectivePolicy
from controlplane.model import NodeInfo
from controlplane.traffic_model import LocalityDistribute, LocalityFailover, LocalityLbSetting
from controlplane.translate.caller_node import node_labels, split_locality, topology_labels
from controlplane.translate.services import MeshEndpoint

_OTHER_REGION = 3
_NOT_FAILOVER_REGION = 4
_LOCALITY_TIERS = 5  # priorities 0..4 from locality, per label tier


@dataclass(frozen=True, slots=True)
class LocalityGroup:
    """One LocalityLbEndpoints entry."""

    locality: str
    priority: int
    weight: int
    endpoints: tuple[MeshEndpoint, ...]


def locality_groups(
    endpoints: Sequence[MeshEndpoint], node: NodeInfo, policy: EffectivePolicy
) -> list[LocalityGroup]:
    """The endpoints grouped by locality, with priorities and weights for ``node``."""
    groups = _by_locality(endpoints)
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    setting = setting if setting is not None else LocalityLbSetting()
    if not setting.enabled:
        return groups
    if setting.distribute:
        return _distribute(groups, node.locality, setting.distribute)
    if not policy.outlier_detection_enabled:
        return groups
    if setting.failover_priority:
        groups = _label_tiers(groups, node_labels(node), setting.failover_priority)
        if not setting.failover:
            return _sorted(groups)
    return _locality_failover(groups, node.locality, setting.failover)


def locality_matches(locality: str, pattern: str) -> bool:
    """Istio's LocalityMatch: ``*`` matches anything; a missing zone/subzone too."""
    have = split_locality(locality)
    want = split_locality(pattern)
    if want[0] != "*" and have[0] != want[0]:
        return False
    return all(w in ("", "*") or h == w for h, w in zip(have[1:], want[1:], strict=True))


def _by_locality(endpoints: Sequence[MeshEndpoint]) -> list[LocalityGroup]:
    by_locality: dict[str, list[MeshEndpoint]] = {}
    for endpoint in endpoints:
        by_locality.setdefault(endpoint.locality, []).append(endpoint)
    return [
        LocalityGroup(
            locality=locality,
            priority=0,
            weight=sum(e.weight for e in members),
            endpoints=tuple(sorted(members, key=lambda e: (e.address, e.port))),
        )
        for locality, members in sorted(by_locality.items())
    ]


def _distribute(
    groups: list[LocalityGroup], client: str, rules: Sequence[LocalityDistribute]
) -> list[LocalityGroup]:
    rule = next((r for r in rules if locality_matches(client, r.from_)), None)
    if rule is None:
        return groups
    unclaimed = list(groups)
    weighted: list[LocalityGroup] = []
    for pattern, share in rule.to.items():
        claimed = [g for g in unclaimed if locality_matches(g.locality, pattern)]
        unclaimed = [g for g in unclaimed if not locality_matches(g.locality, pattern)]
        total = sum(g.weight for g in claimed)
        if share <= 0 or total == 0:
            continue
        weighted.extend(replace(g, weight=math.ceil(g.weight * share / total)) for g in claimed)
    return sorted(weighted, key=lambda g: g.locality)


def _label_tiers(
    groups: list[LocalityGroup], client_labels: Mapping[str, str], keys: Sequence[str]
) -> list[LocalityGroup]:
    """Split every locality by how many leading ``keys`` match the client."""
    if not client_labels:
        return groups  # Istio: a client without labels gets no label tiers
    wanted = [_label_override(key, client_labels) for key in keys]
    tiered: list[LocalityGroup] = []
    for group in groups:
        by_tier: dict[int, list[MeshEndpoint]] = {}
        for endpoint in group.endpoints:
            labels = _endpoint_labels(endpoint)
            mismatch = next((i for i, (k, v) in enumerate(wanted) if labels.get(k) != v), None)
            tier = 0 if mismatch is None else len(wanted) - mismatch
            by_tier.setdefault(tier, []).append(endpoint)
        tiered.extend(
            LocalityGroup(
                locality=group.locality,
                priority=tier,
                weight=sum(e.weight for e in members),
                endpoints=tuple(members),
            )
            for tier, members in sorted(by_tier.items())
        )
    return _renumber(tiered)


def _label_override(key: str, client_labels: Mapping[str, str]) -> tuple[str, str | None]:
    """``key=value`` compares with ``value``; a bare key with the client's own label."""
    if "=" in key:
        name, value = key.split("=", 1)
        return name, value
    return key, client_labels.get(key)


def _locality_failover(
    groups: list[LocalityGroup], client: str, failover: Sequence[LocalityFailover]
) -> list[LocalityGroup]:
    client_region = split_locality(client)[0]
    allowed = next((f.to for f in failover if f.from_ == client_region), None)
    ranked = []
    for group in groups:
        rank = _locality_rank(client, group.locality)
        region = split_locality(group.locality)[0]
        if rank == _OTHER_REGION and allowed is not None and region != allowed:
            rank = _NOT_FAILOVER_REGION
        ranked.append(replace(group, priority=group.priority * _LOCALITY_TIERS + rank))
    return _renumber(ranked)


def _locality_rank(client: str, endpoint: str) -> int:
    """Istio's LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    c_region, c_zone, c_subzone = split_locality(client)
    e_region, e_zone, e_subzone = split_locality(endpoint)
    if c_region != e_region:
        return _OTHER_REGION
    if c_zone != e_zone:
        return 2
    return 0 if c_subzone == e_subzone else 1


def _renumber(groups: list[LocalityGroup]) -> list[LocalityGroup]:
    """Map the priorities in use onto 0..N, keeping their order."""
    dense = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    return _sorted([replace(g, priority=dense[g.priority]) for g in groups])


def _sorted(groups: list[LocalityGroup]) -> list[LocalityGroup]:
    return sorted(groups, key=lambda g: (g.priority, g.locality))


def _endpoint_labels(endpoint: MeshEndpoint) -> dict[str, str]:
    return {**topology_labels(endpoint.locality), **endpoint.labels}
