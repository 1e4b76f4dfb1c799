"""The ``Node`` this client presents on the first request of every ADS stream."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2

from meshlib._version import __version__
from meshlib.errors import BootstrapError
from meshlib.xds_client.bootstrap import NodeConfig

USER_AGENT_NAME = "meshlib"
# What this client understands (the same strings gRPC's clients send).
CLIENT_FEATURES = (
    "envoy.lb.does_not_support_overprovisioning",
    "xds.config.resource-in-sotw",
)


def user_agent_version() -> str:
    """meshlib's version (the package's own constant: reading the installed
    distribution's metadata would load importlib.metadata, about 0.7 MB)."""
    return __version__


def build_node(node: NodeConfig) -> Any:
    """An ``envoy.config.core.v3.Node`` from the bootstrap's node section."""
    msg = base_pb2.Node(
        id=node.id,
        cluster=node.cluster,
        user_agent_name=USER_AGENT_NAME,
        user_agent_version=user_agent_version(),
        client_features=list(CLIENT_FEATURES),
    )
    msg.locality.region = node.locality.region
    msg.locality.zone = node.locality.zone
    msg.locality.sub_zone = node.locality.sub_zone
    try:
        msg.metadata.update(dict(node.metadata))
    except (TypeError, ValueError) as exc:
        raise BootstrapError(f"node.metadata: not representable as a Struct: {exc}") from exc
    return msg
