"""Match blocks that depend on the caller: ``sourceLabels`` and ``sourceNamespace``.

As in Istio, they are evaluated when a caller's routes are built, not per
request: a block applies only to callers whose labels include every
``sourceLabels`` pair and whose namespace is ``sourceNamespace`` (when set). A
rule whose blocks all fail is left out for that caller, the rest keep their
order; a block whose only condition is the source becomes a catch-all route.
So callers with different labels get different route tables.

Translate runs once per look-alike node (see :mod:`controlplane.xds.updater`).
:func:`routing_view` makes nodes look alike when they differ only in what no
rule reads: it keeps the ``LABELS`` keys some ``sourceLabels`` names (all of
them when a DestinationRule uses ``failoverPriority``, which reads any key) and
``NAMESPACE`` only when some block sets ``sourceNamespace``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from controlplane.model import MeshConfig, NodeInfo
from controlplane.traffic_model import HTTPMatchRequest, LoadBalancerSettings, TrafficPolicy
from controlplane.translate.caller_node import (
    NODE_LABELS_KEY,
    NODE_NAMESPACE_KEY,
    node_labels,
    node_namespace,
    own_labels,
)
from controlplane.translate.errors import TranslationError

INBOUND_PORT_KEY = "mesh.inbound_port"  # a sidecar with an inbound listener (security_inbound)


def _no_labels() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Caller:
    """The node routes are built for, as source matches see it."""

    labels: Mapping[str, str] = field(default_factory=_no_labels)
    namespace: str = ""

    @classmethod
    def of(cls, node: NodeInfo) -> Caller:
        return cls(MappingProxyType(node_labels(node)), node_namespace(node))

    def admits(self, block: HTTPMatchRequest) -> bool:
        """Istio's sourceMatchHTTP: labels a subset of the caller's, same namespace."""
        if block.source_namespace and block.source_namespace != self.namespace:
            return False
        return all(self.labels.get(k) == v for k, v in block.source_labels.items())


def routing_view(config: MeshConfig, node: NodeInfo) -> NodeInfo:
    """``node`` without the labels and namespace no rule of ``config`` reads.

    Translating the view gives what translating ``node`` gives; nodes with equal
    views may share one translation.
    """
    if INBOUND_PORT_KEY in node.metadata:
        return node  # a sidecar's inbound policy reads its own labels and namespace
    try:
        labels = own_labels(node.metadata)
    except TranslationError:
        return node  # translate reports it
    keys = None if _uses_failover_priority(config) else _source_label_keys(config)
    metadata = {
        k: v for k, v in node.metadata.items() if k not in (NODE_LABELS_KEY, NODE_NAMESPACE_KEY)
    }
    kept = labels if keys is None else {k: v for k, v in labels.items() if k in keys}
    if kept:
        metadata[NODE_LABELS_KEY] = kept
    if NODE_NAMESPACE_KEY in node.metadata and _uses_source_namespace(config):
        metadata[NODE_NAMESPACE_KEY] = node.metadata[NODE_NAMESPACE_KEY]
    return replace(node, metadata=metadata)


def selector_nodes(config: MeshConfig, bases: Iterable[NodeInfo]) -> list[NodeInfo]:
    """Each of ``bases`` as a caller of every distinct source selector in ``config``,
    so a trial translation also builds the routes only such callers get."""
    selectors = sorted(
        {(tuple(sorted(b.source_labels.items())), b.source_namespace) for b in _blocks(config)}
    )
    trials: list[NodeInfo] = []
    for base in bases:
        for index, (labels, namespace) in enumerate(selectors):
            metadata = {**base.metadata, NODE_LABELS_KEY: dict(labels)}
            if namespace:
                metadata[NODE_NAMESPACE_KEY] = namespace
            trials.append(replace(base, id=f"{base.id}+source-{index}", metadata=metadata))
    return trials


def _blocks(config: MeshConfig) -> Iterator[HTTPMatchRequest]:
    """Every match block with a source condition."""
    for vs in config.virtual_services:
        for rule in vs.http:
            for block in rule.match:
                if block.source_labels or block.source_namespace:
                    yield block


def _source_label_keys(config: MeshConfig) -> frozenset[str]:
    return frozenset(key for block in _blocks(config) for key in block.source_labels)


def _uses_source_namespace(config: MeshConfig) -> bool:
    return any(block.source_namespace for block in _blocks(config))


def _uses_failover_priority(config: MeshConfig) -> bool:
    return any(
        settings.locality_lb_setting is not None
        and bool(settings.locality_lb_setting.failover_priority)
        for policy in _traffic_policies(config)
        for settings in _load_balancers(policy)
    )


def _traffic_policies(config: MeshConfig) -> Iterator[TrafficPolicy]:
    for rule in config.destination_rules:
        if rule.traffic_policy is not None:
            yield rule.traffic_policy
        for subset in rule.subsets:
            if subset.traffic_policy is not None:
                yield subset.traffic_policy


def _load_balancers(policy: TrafficPolicy) -> Iterator[LoadBalancerSettings]:
    if policy.load_balancer is not None:
        yield policy.load_balancer
    for port in policy.port_level_settings:
        if port.load_balancer is not None:
            yield port.load_balancer
