"""Turn the Envoy ``Node`` a client sends into the model's NodeInfo."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.model import NodeInfo


def node_info(node: base_pb2.Node) -> NodeInfo:
    locality = ""
    if node.HasField("locality"):
        parts = (node.locality.region, node.locality.zone, node.locality.sub_zone)
        locality = "/".join(parts).rstrip("/")
    metadata: dict[str, object] = {}
    if node.HasField("metadata"):
        metadata = dict(json_format.MessageToDict(node.metadata))
    return NodeInfo(id=node.id, cluster=node.cluster, locality=locality, metadata=metadata)
