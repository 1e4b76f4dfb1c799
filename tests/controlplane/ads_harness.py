"""A raw ADS client and an in-process control plane for the protocol tests.

The client speaks the wire protocol by hand (the Envoy ADS stub), so tests can
send exactly the ACKs, NACKs and stale nonces they mean to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.model import (
    MeshConfig,
    Resolution,
    ServiceEntry,
    ServicePort,
    WorkloadSpec,
)
from tests.support.raw_xds_stream import RawXdsStream


class RawAdsClient(RawXdsStream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]):
    """One ADS stream; responses are collected in the background."""

    def _open(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> Any:
        return stub.StreamAggregatedResources(self._request_stream())

    def _describe(self, response: discovery_pb2.DiscoveryResponse) -> str:
        return (
            f"{response.type_url} v{response.version_info} with {len(response.resources)} resources"
        )

    def send(
        self,
        type_url: str,
        names: Sequence[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
        with_node: bool | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if with_node or (with_node is None and not self._node_sent):
            request.node.CopyFrom(base_pb2.Node(id=self.node_id, cluster="test"))
            if self.metadata:
                request.node.metadata.update(self.metadata)
            self._node_sent = True
        if error is not None:
            request.error_detail.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            request.error_detail.message = error
        self._requests.put_nowait(request)

    def ack(self, response: discovery_pb2.DiscoveryResponse, names: Sequence[str] = ()) -> None:
        self.send(response.type_url, names, version=response.version_info, nonce=response.nonce)


def service_entry(
    host: str,
    port: int = 80,
    addresses: Sequence[str] = ("10.0.0.1",),
    *,
    resolution: Resolution = Resolution.STATIC,
) -> ServiceEntry:
    return ServiceEntry(
        name=host,
        namespace="default",
        hosts=(host,),
        ports=(ServicePort(number=port, name="http", protocol="HTTP"),),
        resolution=resolution,
        endpoints=tuple(WorkloadSpec(address=a) for a in addresses),
    )


def mesh(*entries: ServiceEntry) -> MeshConfig:
    return MeshConfig(service_entries=entries)


def resource_names(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    """Names of the resources in a response (unpacked by type)."""
    names = []
    for packed in response.resources:
        for cls, attr in (
            (listener_pb2.Listener, "name"),
            (route_pb2.RouteConfiguration, "name"),
            (cluster_pb2.Cluster, "name"),
            (endpoint_pb2.ClusterLoadAssignment, "cluster_name"),
        ):
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                names.append(getattr(message, attr))
    return names
