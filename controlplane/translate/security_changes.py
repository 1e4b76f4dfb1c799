"""What a change of security policies touches, for an incremental translation.

A PeerAuthentication, AuthorizationPolicy or RequestAuthentication applies to the
workloads of its own namespace, or to every workload from the root namespace; a
ServiceIntentions to the workloads serving its destination, or to all for ``*``.
The policies are read in config order within those groups, so a group whose
policies differ in any way (added, removed, edited, reordered) is touched. Inbound
listeners read all four; clusters read PeerAuthentication only (auto mTLS, by the
namespace of each endpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.model import MeshConfig
from controlplane.translate.security_settings import PolicySettings
from controlplane.translate.services import MeshService

EVERY = "*"  # a group that stands for every workload


@dataclass(frozen=True, slots=True)
class SecurityScope:
    """The workloads (by namespace or served host) and endpoints a change touches."""

    namespaces: frozenset[str]  # inbound listeners of workloads here (EVERY: all)
    hosts: frozenset[str]  # inbound listeners of workloads serving these (EVERY: all)
    peer_namespaces: frozenset[str]  # clusters with an endpoint here (EVERY: all)

    @property
    def inbound(self) -> bool:
        return bool(self.namespaces or self.hosts)

    def touches_workload(self, namespace: str, hosts: Iterable[str]) -> bool:
        if EVERY in self.namespaces or EVERY in self.hosts or namespace in self.namespaces:
            return True
        return any(host in self.hosts for host in hosts)

    def touches_clusters(self, service: MeshService) -> bool:
        if not self.peer_namespaces:
            return False
        if EVERY in self.peer_namespaces:
            return True
        return any(
            (e.namespace or service.namespace) in self.peer_namespaces for e in service.endpoints
        ) or (not service.endpoints and service.namespace in self.peer_namespaces)


def security_scope(
    before: MeshConfig, after: MeshConfig, settings: PolicySettings
) -> SecurityScope:
    """What changed between the security policies of ``before`` and ``after``."""
    root = settings.root_namespace
    peers = _groups_changed(
        before.peer_authentications, after.peer_authentications, _namespace, root
    )
    namespaces = set(peers)
    for kind in ("authorization_policies", "request_authentications"):
        namespaces |= _groups_changed(getattr(before, kind), getattr(after, kind), _namespace, root)
    hosts = _groups_changed(
        before.service_intentions, after.service_intentions, _destination, EVERY
    )
    return SecurityScope(frozenset(namespaces), frozenset(hosts), frozenset(peers))


def _namespace(policy: Any) -> str:
    return str(policy.namespace)


def _destination(intention: Any) -> str:
    return str(intention.destination)


def _groups_changed(
    before: Sequence[object], after: Sequence[object], group: Callable[[Any], str], every: str
) -> set[str]:
    """The groups whose policies differ; EVERY when the ``every`` group does."""
    if before is after or before == after:
        return set()
    old: dict[str, list[object]] = {}
    new: dict[str, list[object]] = {}
    for policies, by_group in ((before, old), (after, new)):
        for policy in policies:
            by_group.setdefault(group(policy), []).append(policy)
    changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    return {EVERY} if every in changed else changed
