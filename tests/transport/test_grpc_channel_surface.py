"""A mesh channel shows grpc's channel surface and meshlib's documented extras only:
the internals its multicallables use live on its core, not on the user's channel."""

from __future__ import annotations

from pathlib import Path

import grpc

import meshlib
from tests.routing.fake_xds import FakeXds

#: docs/api.md's extras on both channels (DESIGN.md fixes grpc.Channel's surface).
DOCUMENTED_EXTRAS = {"endpoint_channels", "mirror_stats"}
API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def public_extras(channel: object, base: type) -> set[str]:
    return {name for name in dir(channel) if not name.startswith("_")} - set(dir(base))


def test_sync_channel_shows_only_grpc_surface_and_documented_extras(feed: FakeXds) -> None:
    with meshlib.Mesh.with_xds_client(feed) as mesh:
        channel = mesh.grpc_channel("xds:///surface:50051")
        assert isinstance(channel, grpc.Channel)
        assert public_extras(channel, grpc.Channel) == DOCUMENTED_EXTRAS
        channel.close()


async def test_aio_channel_shows_only_grpc_surface_and_documented_extras(feed: FakeXds) -> None:
    async with meshlib.Mesh.with_xds_client(feed) as mesh:
        channel = mesh.aio_grpc_channel("xds:///surface:50051")
        assert isinstance(channel, grpc.aio.Channel)
        assert public_extras(channel, grpc.aio.Channel) == DOCUMENTED_EXTRAS
        await channel.close()


def test_the_extras_are_documented() -> None:
    api = API_DOC.read_text()
    for name in DOCUMENTED_EXTRAS:
        assert f"`{name}()`" in api or f"`{name}()." in api, name
