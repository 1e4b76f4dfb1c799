"""Checks between security resources: one namespace-wide PeerAuthentication per
namespace (Istio would pick the oldest silently; meshlib refuses the second), which
also keeps the mesh-wide one (root namespace, no selector) unique."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.config.cross_checks import issue_at
from controlplane.config.errors import ConfigIssue
from controlplane.security_model import PeerAuthentication


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
