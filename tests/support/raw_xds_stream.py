"""One hand-driven ADS stream (state of the world or Delta) for protocol tests.

Requests go out exactly as a test queues them; responses are collected in the
background as the server wrote them. Subclasses open their RPC and build requests.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

Request = TypeVar("Request")
Response = TypeVar("Response")


class RawXdsStream(ABC, Generic[Request, Response]):
    """The stream plumbing shared by the raw SotW and Delta clients."""

    def __init__(
        self, channel: grpc.aio.Channel, node_id: str, metadata: dict[str, object] | None = None
    ) -> None:
        self.node_id = node_id
        self.metadata = metadata
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._node_sent = False
        self.error: grpc.aio.AioRpcError | None = None
        self.call = self._open(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
        self._reader = asyncio.ensure_future(self._read())

    @abstractmethod
    def _open(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> Any:
        """Start the RPC over ``self._request_stream()``."""

    @abstractmethod
    def _describe(self, response: Response) -> str:
        """A response, briefly, for an assertion message."""

    async def _request_stream(self) -> AsyncIterator[Request]:
        while True:
            request = await self._requests.get()
            if request is None:
                return
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self._responses.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    async def recv(self, timeout: float = 3.0) -> Response:
        return await asyncio.wait_for(self._responses.get(), timeout)

    async def expect_silence(self, within: float = 0.3) -> None:
        """Nothing arrives for ``within`` seconds (the only way to see an absence)."""
        try:
            response = await asyncio.wait_for(self._responses.get(), within)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected response {self._describe(response)}")

    async def wait_closed(self, timeout: float = 3.0) -> None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    def end_requests(self) -> None:
        """Half-close: no more requests (the server's read of the stream ends)."""
        self._requests.put_nowait(None)

    async def close(self) -> None:
        self._requests.put_nowait(None)
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


Stream = TypeVar("Stream", bound="RawXdsStream[Any, Any]")


@asynccontextmanager
async def closing_streams(
    open_stream: Callable[[str], Stream],
) -> AsyncIterator[Callable[[str], Awaitable[Stream]]]:
    """Yield ``connect(node_id)``, which opens a stream with ``open_stream``; every stream
    opened is closed when the block ends."""
    streams: list[Stream] = []

    async def connect(node_id: str) -> Stream:
        stream = open_stream(node_id)
        streams.append(stream)
        return stream

    try:
        yield connect
    finally:
        for stream in streams:
            await stream.close()
