"""A raw Delta (incremental) ADS client for the protocol tests.

It speaks DeltaAggregatedResources by hand through the Envoy ADS stub, so a
test sends exactly the subscriptions, ACKs, NACKs and nonces it means to and
sees every response as the server wrote it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

_END = None


class RawDeltaClient:
    """One DeltaAggregatedResources stream; responses are collected in the background."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node_id: str,
        metadata: dict[str, object] | None = None,
        user_agent: str = "",
    ) -> None:
        self.node_id = node_id
        self.metadata = metadata
        self.user_agent = user_agent
        self._requests: asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest | None] = asyncio.Queue()
        self._responses: asyncio.Queue[discovery_pb2.DeltaDiscoveryResponse] = asyncio.Queue()
        self._node_sent = False
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.DeltaAggregatedResources(self._request_stream())
        self._reader = asyncio.ensure_future(self._read())
        self.error: grpc.aio.AioRpcError | None = None

    async def _request_stream(self) -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        while True:
            request = await self._requests.get()
            if request is _END:
                return
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self._responses.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

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

    async def recv(self, timeout: float = 3.0) -> discovery_pb2.DeltaDiscoveryResponse:
        return await asyncio.wait_for(self._responses.get(), timeout)

    async def recv_acked(self, timeout: float = 3.0) -> discovery_pb2.DeltaDiscoveryResponse:
        """The next response, ACKed at once (as a client that applies it would)."""
        response = await self.recv(timeout)
        self.ack(response)
        return response

    async def expect_silence(self, within: float = 0.3) -> None:
        """Nothing arrives for ``within`` seconds (the only way to see an absence)."""
        try:
            response = await asyncio.wait_for(self._responses.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(
            f"unexpected response {response.type_url} resources {names(response)} "
            f"removed {list(response.removed_resources)}"
        )

    async def wait_closed(self, timeout: float = 3.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self) -> None:
        self._requests.put_nowait(_END)
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def names(response: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    """Names of the resources a Delta response carries, in order."""
    return [resource.name for resource in response.resources]


def versions(response: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, str]:
    """name -> version of the resources a Delta response carries."""
    return {resource.name: resource.version for resource in response.resources}
