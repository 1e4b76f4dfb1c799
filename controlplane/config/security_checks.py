"""Checks between security resources: one namespace-wide PeerAuthentication per
namespace (Istio would pick the oldest silently; meshlib refuses the second), which
also keeps the mesh-wide one (root namespace, no selector) unique; one
ServiceIntentions per destination, as Consul keeps them."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.config.cross_checks import issue_at
from controlplane.config.errors import ConfigIssue
from controlplane.security_model import PeerAuthentication, ServiceIntentions


def check_one_namespace_peer_authentication(
    policies: Sequence[PeerAuthentication],
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    first: dict[str, PeerAuthentication] = {}
    for policy in policies:
        if policy.selector is not None:
            continue
        earlier = first.setdefault(policy.namespace, policy)
        if earlier is not policy:
            issues.append(
                issue_at(
                    policy.source,
                    "spec",
                    f"namespace {policy.namespace!r} already has a PeerAuthentication without "
                    f"selector ({earlier.name}, at {earlier.source}); keep one",
                )
            )
    return issues


def check_one_intentions_per_destination(
    intentions: Sequence[ServiceIntentions],
) -> list[ConfigIssue]:
    """Consul keeps one ServiceIntentions config entry per destination service."""
    issues: list[ConfigIssue] = []
    first: dict[str, ServiceIntentions] = {}
    for entry in intentions:
        earlier = first.setdefault(entry.destination, entry)
        if earlier is not entry:
            issues.append(
                issue_at(
                    entry.source,
                    "spec.destination.name",
                    f"destination {entry.destination!r} already has ServiceIntentions "
                    f"{earlier.namespace}/{earlier.name} at {earlier.source} (one per destination)",
                )
            )
    return issues
