"""Who is asking: the calling node's labels and namespace, as Istio reads them.

A proxy's own labels are the bootstrap's ``node.metadata.LABELS`` (a map of
label name to string value) and its namespace is ``node.metadata.NAMESPACE``
(Istio's keys). Like Istio, the caller's labels also hold the topology labels of
its locality (``topology.kubernetes.io/region``, ``topology.kubernetes.io/zone``,
``topology.istio.io/subzone``) unless it sets them itself, so ``failoverPriority``
and ``sourceLabels`` can name them. A bad shape raises TranslationError naming
the key (the ADS stream refuses such a node alone, before it is translated).
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.model import NodeInfo
from controlplane.translate.errors import TranslationError

NODE_LABELS_KEY = "LABELS"
NODE_NAMESPACE_KEY = "NAMESPACE"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def split_locality(locality: str) -> tuple[str, str, str]:
    region, zone, subzone = [*locality.split("/", 2), "", ""][:3]
    return region, zone, subzone


def topology_labels(locality: str) -> dict[str, str]:
    """The topology labels Istio gives a workload in ``locality``."""
    region, zone, subzone = split_locality(locality)
    pairs = ((REGION_LABEL, region), (ZONE_LABEL, zone), (SUBZONE_LABEL, subzone))
    return {key: value for key, value in pairs if value}


def own_labels(metadata: Mapping[str, object]) -> dict[str, str]:
    """``metadata["LABELS"]`` (absent: none); raises TranslationError unless a map of strings."""
    raw = metadata.get(NODE_LABELS_KEY)
    if raw is None:
        return {}
    where = f"node metadata {NODE_LABELS_KEY!r}"
    if not isinstance(raw, Mapping):
        raise TranslationError(f"{where}: must be a map of label name to string value, got {raw!r}")
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise TranslationError(f"{where}: label {key!r} must be a string, got {value!r}")
        labels[str(key)] = value
    return labels


def node_labels(node: NodeInfo) -> dict[str, str]:
    """The caller's labels: its own over its locality's topology labels."""
    return {**topology_labels(node.locality), **own_labels(node.metadata)}


def node_namespace(node: NodeInfo) -> str:
    """``metadata["NAMESPACE"]``, "" when absent (then no ``sourceNamespace`` applies)."""
    raw = node.metadata.get(NODE_NAMESPACE_KEY, "")
    if not isinstance(raw, str):
        raise TranslationError(
            f"node metadata {NODE_NAMESPACE_KEY!r}: must be a string, got {raw!r}"
        )
    return raw
