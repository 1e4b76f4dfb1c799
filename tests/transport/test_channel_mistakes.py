"""An application developer's mistakes with a mesh channel are named where they are
made: bad ``options`` when the channel is made (not at the first call, deep inside
grpc), and a ``grpc.aio`` channel called from sync code (not a task that never runs)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import grpc
import pytest

import meshlib
from meshlib.testing import FakeXds
from tests.support.backends import grpc_backends

TARGET = "xds:///echo:50051"
WHO = "/test.Echo/Who"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("grpc.enable_retries", "options must be (name, value) pairs, got 'grpc.enable_retries'"),
        (None, "options must be (name, value) pairs, got None"),
        ([("grpc.max_send_message_length",)], "option ('grpc.max_send_message_length',) is not"),
        ([(1, 2)], "option (1, 2) is not a (name, value) pair"),
    ],
)
def test_bad_channel_options_are_named_when_the_channel_is_made(
    feed: FakeXds, options: object, named: str
) -> None:
    with meshlib.Mesh.with_xds_client(feed) as mesh:
        with pytest.raises(TypeError, match=rf"channel '{TARGET}': ") as raised:
            mesh.grpc_channel(TARGET, options=options)  # type: ignore[arg-type]
        assert named in str(raised.value)
        with pytest.raises(TypeError, match=r"not a|must be"):
            mesh.aio_grpc_channel(TARGET, options=options)  # type: ignore[arg-type]


def test_good_options_still_reach_the_endpoint(feed: FakeXds) -> None:
    with grpc_backends(1) as (backend,), meshlib.Mesh.with_xds_client(feed) as mesh:
        feed.set_service("echo:50051", {"echo": [f"127.0.0.1:{backend.port}"]})
        options = (("grpc.max_receive_message_length", 1 << 20) for _ in range(1))  # any iterable
        channel = mesh.grpc_channel(TARGET, options=options)
        assert channel.unary_unary(WHO)(b"x", timeout=10) == b"g0"


def test_an_aio_channel_called_from_sync_code_says_so(feed: FakeXds) -> None:
    with grpc_backends(1) as (backend,), meshlib.Mesh.with_xds_client(feed) as mesh:
        feed.set_service("echo:50051", {"echo": [f"127.0.0.1:{backend.port}"]})
        channel = mesh.aio_grpc_channel(TARGET)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(RuntimeError, match=r"'echo:50051': call it from a coroutine"):
                channel.unary_unary(WHO)(b"x")
            gc.collect()
        assert [str(w.message) for w in caught] == []  # no coroutine left never awaited

        async def call() -> bytes:
            answer: bytes = await channel.unary_unary(WHO)(b"x", timeout=10)
            await channel.close()
            return answer

        assert asyncio.run(call()) == b"g0"


def test_a_call_on_a_channel_closed_before_its_first_call_says_closed(feed: FakeXds) -> None:
    """Not a wait for config that can no longer come, then 'no xDS config'."""
    feed.set_service("echo:50051", {"echo": ["127.0.0.1:1"]})
    mesh = meshlib.Mesh.with_xds_client(feed, ready_timeout_s=3)
    channel = mesh.grpc_channel(TARGET)
    mesh.close()
    with pytest.raises(meshlib.MeshRpcError, match="echo:50051: this mesh transport is closed"):
        channel.unary_unary(WHO)(b"x")

    async def aio_call() -> None:
        async with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=3) as aio_mesh:
            aio_channel = aio_mesh.aio_grpc_channel(TARGET)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await aio_channel.unary_unary(WHO)(b"x")
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "this mesh transport is closed" in (raised.value.details() or "")

    asyncio.run(aio_call())


def test_a_channel_to_a_port_the_mesh_does_not_have_names_the_ports_it_has(
    feed: FakeXds,
) -> None:
    feed.set_service("echo:50051", {"echo": ["127.0.0.1:1"]})
    with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=3) as mesh:
        mesh.wait_ready(TARGET)  # the service list is known
        with pytest.raises(meshlib.MeshRpcError) as raised:
            mesh.grpc_channel("xds:///echo:50052").unary_unary(WHO)(b"x")
        assert str(raised.value.details()).endswith("(the mesh has echo on port 50051)")
        with pytest.raises(meshlib.MeshRpcError) as raised:
            mesh.grpc_channel("xds:///ecko:50051").unary_unary(WHO)(b"x")
        assert "ecko:50051" in str(raised.value.details())
        assert "the mesh has" not in str(raised.value.details())

        async def aio_call() -> None:
            channel = mesh.aio_grpc_channel("xds:///echo:50052")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await channel.unary_unary(WHO)(b"x")
            assert str(raised.value.details()).endswith("(the mesh has echo on port 50051)")
            await channel.close()

        asyncio.run(aio_call())
