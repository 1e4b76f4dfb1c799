"""Listeners and route tables for one node: proxyless or Envoy sidecar.

A proxyless client (meshlib, gRPC) gets one api_listener and one route table
``HOST:PORT`` per service; an Envoy sidecar (``node.is_sidecar``) gets the one
``mesh_outbound`` listener and route table instead (see :mod:`.sidecar`).
Only the node's metadata is read, never its id, so nodes that differ by id
share a translation. Route tables depend on the node's labels and namespace
when a VirtualService matches on the source (:mod:`.source_match`).
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from controlplane.model import MeshConfig, NodeInfo
from controlplane.translate import naming
from controlplane.translate.listeners import build_listener
from controlplane.translate.routes import (
    ServiceRouting,
    build_route_configuration,
    plan_routing,
)
from controlplane.translate.services import MeshService
from controlplane.translate.sidecar import (
    build_sidecar_listener,
    build_sidecar_route_configuration,
    outbound_port,
)
from controlplane.translate.source_match import Caller


def http_resources(
    config: MeshConfig,
    services: Sequence[MeshService],
    node: NodeInfo,
    routings: Sequence[ServiceRouting] | None = None,
) -> tuple[dict[str, Message], dict[str, Message]]:
    """(listeners by name, route configurations by name) for ``node``; ``routings``:
    the services' routing for ``node`` when already planned."""
    if routings is None:
        routings = plan_routing(services, config, Caller.of(node))
    if node.is_sidecar:
        port = outbound_port(node.metadata)
        name = naming.SIDECAR_OUTBOUND
        return (
            {name: build_sidecar_listener(port, routings)},
            {name: build_sidecar_route_configuration(routings)},
        )
    listeners: dict[str, Message] = {}
    route_configs: dict[str, Message] = {}
    for routing in routings:
        listener = build_listener(routing.service, routing)
        route_config = build_route_configuration(routing.service, routing)
        listeners[listener.name] = listener
        route_configs[route_config.name] = route_config
    return listeners, route_configs
