"""The Registry gRPC service over a real grpc.aio server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from controlplane.model import Locality
from controlplane.registration_service import (
    DEREGISTER_METHOD,
    HEARTBEAT_METHOD,
    REGISTER_METHOD,
    RegistrationService,
)
from controlplane.registry import Registry
from meshlib._protos import registry_v1_pb2 as pb


class Client:
    """Calls the three methods by path, as meshlib's client does."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.register = channel.unary_unary(
            REGISTER_METHOD,
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        self.heartbeat = channel.unary_unary(
            HEARTBEAT_METHOD,
            request_serializer=pb.HeartbeatRequest.SerializeToString,
            response_deserializer=pb.HeartbeatResponse.FromString,
        )
        self.deregister = channel.unary_unary(
            DEREGISTER_METHOD,
            request_serializer=pb.DeregisterRequest.SerializeToString,
            response_deserializer=pb.DeregisterResponse.FromString,
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[Registry, Client]]:
    registry = Registry()
    server = grpc.aio.server()
    RegistrationService(registry).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield registry, Client(channel)
    finally:
        await channel.close(None)
        await server.stop(grace=None)


def test_method_paths_are_the_documented_ones() -> None:
    assert REGISTER_METHOD == "/meshlib.registry.v1.Registry/Register"
    assert HEARTBEAT_METHOD == "/meshlib.registry.v1.Registry/Heartbeat"
    assert DEREGISTER_METHOD == "/meshlib.registry.v1.Registry/Deregister"


async def test_register_heartbeat_deregister(served: tuple[Registry, Client]) -> None:
    registry, client = served
    response: Any = await client.register(
        pb.RegisterRequest(
            service="sessions",
            address="127.0.0.1",
            ports={50051: 50052},
            labels={"version": "v2"},
            locality=pb.Locality(region="eu", zone="west"),
            weight=3,
            ttl_seconds=12.5,
            namespace="conf",
        )
    )
    assert response.ttl_seconds == 12.5
    (workload,) = registry.snapshot()
    assert workload.id == response.id
    assert dict(workload.ports) == {50051: 50052}
    assert dict(workload.labels) == {"version": "v2"}
    assert (workload.locality, workload.weight, workload.namespace) == (
        Locality("eu", "west"),
        3,
        "conf",
    )

    beat: Any = await client.heartbeat(pb.HeartbeatRequest(id=response.id))
    assert beat.ttl_seconds == 12.5

    await client.deregister(pb.DeregisterRequest(id=response.id))
    assert registry.snapshot() == ()
    await client.deregister(pb.DeregisterRequest(id=response.id))  # idempotent


@pytest.mark.parametrize(
    ("fields", "path", "locality"),
    [
        (pb.Locality(zone="z1"), "", Locality(zone="z1")),
        (pb.Locality(region="r1", sub_zone="s1"), "", Locality(region="r1", sub_zone="s1")),
        (pb.Locality(region="r1", zone="z1"), "ignored/when/fields", Locality("r1", "z1")),
        (None, "eu/west", Locality("eu", "west")),  # a client from before the message
        (None, "", Locality()),
    ],
)
async def test_locality_fields_each_optional_and_the_old_path_still_read(
    served: tuple[Registry, Client], fields: Any, path: str, locality: Locality
) -> None:
    registry, client = served
    message = pb.RegisterRequest(service="s", address="10.0.0.1", ports={80: 80})
    if fields is not None:
        message.locality.CopyFrom(fields)
    message.locality_path = path
    await client.register(message)
    (workload,) = registry.snapshot()
    assert workload.locality == locality


async def test_proto_zero_values_mean_defaults(served: tuple[Registry, Client]) -> None:
    registry, client = served
    response: Any = await client.register(
        pb.RegisterRequest(service="sessions", address="10.1.2.3", ports={80: 8080}, id="s-1")
    )
    assert (response.id, response.ttl_seconds) == ("s-1", 30.0)
    (workload,) = registry.snapshot()
    assert (workload.weight, workload.namespace, workload.ttl_s) == (1, "default", 30.0)


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (pb.RegisterRequest(service="Bad Name", address="10.0.0.1", ports={80: 80}), "service: "),
        (pb.RegisterRequest(service="s", address="not-an-ip", ports={80: 80}), "address: "),
        (pb.RegisterRequest(service="s", address="10.0.0.1"), "ports: "),
        (pb.RegisterRequest(service="s", address="10.0.0.1", ports={80: 70000}), "ports[80]: "),
        (
            pb.RegisterRequest(service="s", address="10.0.0.1", ports={80: 80}, ttl_seconds=9999),
            "ttl_seconds: ",
        ),
        (
            pb.RegisterRequest(
                service="s", address="10.0.0.1", ports={80: 80}, locality_path="/z1/"
            ),
            "locality: ",
        ),
        (
            pb.RegisterRequest(
                service="s",
                address="10.0.0.1",
                ports={80: 80},
                locality=pb.Locality(zone=" z1"),
            ),
            "locality.zone: ",
        ),
    ],
)
async def test_bad_registration_is_invalid_argument(
    served: tuple[Registry, Client], request_: Any, detail: str
) -> None:
    registry, client = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.register(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(detail)
    assert registry.snapshot() == ()


async def test_heartbeat_of_unknown_id_is_not_found(served: tuple[Registry, Client]) -> None:
    _, client = served
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.heartbeat(pb.HeartbeatRequest(id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "register again" in (info.value.details() or "")


async def test_empty_id_is_invalid_argument(served: tuple[Registry, Client]) -> None:
    _, client = served
    for call in (
        client.heartbeat(pb.HeartbeatRequest()),
        client.deregister(pb.DeregisterRequest()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "id: is required"
