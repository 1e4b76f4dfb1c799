"""A raw Delta (incremental) ADS client for the protocol tests.

It speaks DeltaAggregatedResources by hand through the Envoy ADS stub, so a
test sends exactly the subscriptions, ACKs, NACKs and nonces it means to and
sees every response as the server wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.support.raw_xds_stream import RawXdsStream


class RawDeltaClient(
    RawXdsStream[discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse]
):
    """One DeltaAggregatedResources stream; responses are collected in the background."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node_id: str,
        metadata: dict[str, object] | None = None,
        user_agent: str = "",
    ) -> None:
        self.user_agent = user_agent
        super().__init__(channel, node_id, metadata)

    def _open(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> Any:
        return stub.DeltaAggregatedResources(self._request_stream())

    def _describe(self, response: discovery_pb2.DeltaDiscoveryResponse) -> str:
        return (
            f"{response.type_url} resources {names(response)} "
            f"removed {list(response.removed_resources)}"
        )

    def send_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        """Send ``request`` as it is (the first one gets the node unless it has one)."""
        if not self._node_sent and not request.HasField("node"):
            request.node.CopyFrom(
                base_pb2.Node(id=self.node_id, cluster="test", user_agent_name=self.user_agent)
            )
            if self.metadata:
                request.node.metadata.update(self.metadata)
        self._node_sent = True
        self._requests.put_nowait(request)

    def send(
        self,
        type_url: str,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        *,
        initial_versions: Mapping[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_versions or {}),
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            request.error_detail.message = error
        self.send_request(request)

    def ack(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        self.send(response.type_url, nonce=response.nonce)

    def nack(self, response: discovery_pb2.DeltaDiscoveryResponse, error: str) -> None:
        self.send(response.type_url, nonce=response.nonce, error=error)

    async def recv_acked(self, timeout: float = 3.0) -> discovery_pb2.DeltaDiscoveryResponse:
        """The next response, ACKed at once (as a client that applies it would)."""
        response = await self.recv(timeout)
        self.ack(response)
        return response


def names(response: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    """Names of the resources a Delta response carries, in order."""
    return [resource.name for resource in response.resources]


def versions(response: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, str]:
    """name -> version of the resources a Delta response carries."""
    return {resource.name: resource.version for resource in response.resources}
