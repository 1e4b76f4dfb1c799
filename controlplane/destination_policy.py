"""Which DestinationRule governs a service, and the traffic policy in force
for one of its clusters.

Part of the traffic model, not of translate: the config checks (load time) and
translate (xDS) both read the policy in force from here, so the two cannot drift
and the config layer never imports translate.

Precedence follows Istio's ``MergeTrafficPolicy``, at the level of whole
blocks (``loadBalancer``, ``connectionPool``, ``outlierDetection``):

1. the rule's top-level ``trafficPolicy``;
2. its ``portLevelSettings`` entry for the service port overrides (1);
3. the subset's ``trafficPolicy`` overrides (2), block by block;
4. the subset's ``portLevelSettings`` entry for the port overrides (3).

A block set at a lower level replaces the whole block above it (Istio does not
merge fields inside a block).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from controlplane.security_model import ClientTLSSettings
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    DestinationRule,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TrafficPolicy,
    TrafficPolicyExtensions,
)


class UnknownSubsetError(ValueError):
    """A destination names a subset its DestinationRule does not define (callers
    check subsets first: the config checks report it with the field named)."""


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """The blocks in force for one cluster, and where they came from."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None  # None: auto mTLS decides
    extensions: TrafficPolicyExtensions = field(default_factory=TrafficPolicyExtensions)
    where: str = ""  # "DestinationRule NS/NAME (file#doc)", for error messages

    @property
    def outlier_detection_enabled(self) -> bool:
        """Whether the cluster ejects outliers (Istio's condition for locality failover)."""
        ext = self.extensions
        return (
            self.outlier_detection is not None
            or ext.success_rate_ejection is not None
            or ext.failure_percentage_ejection is not None
        )


NO_POLICY = EffectivePolicy()


def rule_origin(rule: DestinationRule) -> str:
    where = f" ({rule.source})" if rule.source is not None else ""
    return f"DestinationRule {rule.namespace}/{rule.name}{where}"


def destination_rule_for(rules: Iterable[DestinationRule], host: str) -> DestinationRule | None:
    """The rule for ``host``. The config parser refuses wildcard hosts and a second
    rule for a host, so the first rule naming the host is the only one."""
    return next((rule for rule in rules if rule.host == host), None)


def find_subset(rule: DestinationRule, name: str) -> Subset:
    for subset in rule.subsets:
        if subset.name == name:
            return subset
    raise UnknownSubsetError(f"{rule_origin(rule)}: no subset named {name!r}")


def effective_policy(rule: DestinationRule | None, port: int, subset: str = "") -> EffectivePolicy:
    """The policy for cluster ``outbound|port|subset|rule.host`` (see the module doc)."""
    if rule is None:
        return NO_POLICY
    policy = EffectivePolicy(extensions=rule.extensions, where=rule_origin(rule))
    policy = _apply_level(policy, rule.traffic_policy, port)
    if subset:
        policy = _apply_level(policy, find_subset(rule, subset).traffic_policy, port)
    return policy


def _apply_level(
    policy: EffectivePolicy, level: TrafficPolicy | None, port: int
) -> EffectivePolicy:
    if level is None:
        return policy
    policy = _override(policy, level)
    port_level = _port_settings(level.port_level_settings, port)
    return _override(policy, port_level) if port_level is not None else policy


def _override(policy: EffectivePolicy, level: TrafficPolicy | PortTrafficPolicy) -> EffectivePolicy:
    lb, pool, outlier = level.load_balancer, level.connection_pool, level.outlier_detection
    return replace(
        policy,
        load_balancer=lb if lb is not None else policy.load_balancer,
        connection_pool=pool if pool is not None else policy.connection_pool,
        outlier_detection=outlier if outlier is not None else policy.outlier_detection,
        tls=level.tls if level.tls is not None else policy.tls,
    )


def _port_settings(settings: Iterable[PortTrafficPolicy], port: int) -> PortTrafficPolicy | None:
    for entry in settings:
        if entry.port == port:
            return entry
    return None
