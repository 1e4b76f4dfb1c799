from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from controlplane.xds import XdsService
from tests.support.xds_service import xds_channel


@pytest.fixture
async def channel(service: XdsService) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the module's ``service`` fixture, served on loopback."""
    async with xds_channel(service) as channel:
        yield channel
