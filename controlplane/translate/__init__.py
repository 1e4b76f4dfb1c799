"""translate: the mesh model to xDS, as a pure function.

``translate(config, workloads, node)`` reads no files, clocks or globals: the
same input gives byte-identical protos, so snapshot versions can be hashes.
One module per resource type builds from the service catalog
(:mod:`.services`); names live in :mod:`.naming`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload, Resolution
from controlplane.translate.caller_node import node_namespace, own_labels
from controlplane.translate.clusters import build_cluster
from controlplane.translate.errors import TranslationError
from controlplane.translate.http_resources import http_resources
from controlplane.translate.reuse import shared_work
from controlplane.translate.security_inbound import (
    check_sidecar_inbound,
    has_sidecar_inbound,
    proxyless_inbound_listeners,
    sidecar_inbound,
)
from controlplane.translate.security_settings import DEFAULT_POLICY_SETTINGS, PolicySettings
from controlplane.translate.security_tls import CertSource
from controlplane.translate.security_upstream import secured_cluster
from controlplane.translate.sidecar import outbound_port
from controlplane.translate.source_match import Caller
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

# type URL -> resource name -> proto message
Resources = Mapping[str, Mapping[str, Message]]

__all__ = ["PolicySettings", "Resources", "TranslationError", "check_node", "translate"]


def translate(
    config: MeshConfig,
    workloads: Sequence[RegisteredWorkload],
    node: NodeInfo,
    policy: PolicySettings = DEFAULT_POLICY_SETTINGS,
) -> Resources:
    """Every resource ``node`` may ask for, keyed by type URL then name.

    All four type URLs are always present (possibly empty). Raises
    :class:`TranslationError` (and produces nothing) when the model cannot be
    expressed in xDS. ``policy`` holds the trust domain and root namespace.
    """
    shared = shared_work(config, workloads)
    services, plans = shared.services, shared.plans
    routings = shared.routing(Caller.of(node))
    listeners, route_configs = http_resources(config, services, node, routings)
    certs = CertSource.of(node)
    clusters = _by_name(secured_cluster(build_cluster(p), p, config, policy, certs) for p in plans)
    if has_sidecar_inbound(node):
        inbound, app_cluster = sidecar_inbound(config, services, node, policy)
        listeners[inbound.name] = inbound
        clusters[app_cluster.name] = app_cluster
    elif not node.is_sidecar:
        listeners.update(proxyless_inbound_listeners(config, services, policy))
    return {
        LISTENER_TYPE_URL: listeners,
        ROUTE_CONFIG_TYPE_URL: route_configs,
        CLUSTER_TYPE_URL: clusters,
        ENDPOINTS_TYPE_URL: _by_cluster_name(
            shared.load_assignment(p, node, policy)
            for p in plans
            if p.service.resolution is Resolution.STATIC
        ),
    }


def check_node(node: NodeInfo) -> None:
    """Raise :class:`TranslationError` (naming the metadata key) when no config could
    be translated for ``node``: a sidecar without a usable outbound port, ``LABELS``
    that are not a map of strings, a ``NAMESPACE`` that is not a string."""
    if node.is_sidecar:
        outbound_port(node.metadata)
    check_sidecar_inbound(node)
    own_labels(node.metadata)
    node_namespace(node)


def _by_name(messages: Iterable[Any]) -> dict[str, Message]:
    return {m.name: m for m in messages}


def _by_cluster_name(messages: Iterable[Any]) -> dict[str, Message]:
    return {m.cluster_name: m for m in messages}
