"""Decode helpers shared by the CDS policy tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshlib.xds_client import CLUSTER
from meshlib.xds_client.resources import (
    ClusterResource,
)
from tests.xds_client import xds_builders as b

__all__ = ["CLUSTER_NAME", "HPO_KEY", "decode_with", "typed"]

CLUSTER_NAME = 'Cluster "c1"'
HPO_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def decode_with(change: Callable[[Any], object]) -> ClusterResource:
    msg = b.cluster()
    change(msg)
    return CLUSTER.decode(b.pack(msg))


def typed(*configs: Any) -> Callable[[Any], object]:
    def change(c: Any) -> None:
        for i, config in enumerate(configs):
            c.load_balancing_policy.policies.add(
                typed_extension_config={"name": f"p{i}", "typed_config": b.pack(config)}
            )

    return change
