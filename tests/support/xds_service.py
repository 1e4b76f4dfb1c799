"""The control plane's xDS service in this process, served by a real grpc.aio server on
loopback: for tests that drive it directly (``service.update``) and watch what clients get."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from controlplane.xds import XdsService


@asynccontextmanager
async def serving_xds(service: XdsService) -> AsyncIterator[int]:
    """Serve ``service`` on an OS-picked loopback port (yielded) until the block ends."""
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await service.start()
    try:
        yield port
    finally:
        await service.stop()
        await server.stop(None)


@asynccontextmanager
async def xds_channel(service: XdsService) -> AsyncIterator[grpc.aio.Channel]:
    """Serve ``service`` as :func:`serving_xds` does; yield a channel to it."""
    async with serving_xds(service) as port:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield channel
        finally:
            await channel.close(None)
