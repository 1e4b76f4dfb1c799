"""mesh.register() against a real gRPC server implementing meshlib.registry.v1.Registry
(a scripted one, to reach every branch; tests/transport/test_registration_live.py runs
against the control plane itself)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import meshlib
from meshlib._protos import registry_v1_pb2 as pb
from meshlib.transport.registration import build_request, detect_address
from meshlib.xds_client.resources import Locality
from tests.transport.polling import eventually


class FakeRegistry:
    """Records every call; grants a short TTL; can forget registrations."""

    def __init__(self, ttl_s: float = 0.15) -> None:
        self.ttl_s = ttl_s
        self.lock = threading.Lock()
        self.registered: list[pb.RegisterRequest] = []
        self.live: set[str] = set()
        self.heartbeats = 0
        self.deregistered: list[str] = []
        self.refuse = False
        self.unavailable = 0  # answer this many Register calls with UNAVAILABLE
        self.attempts: list[str] = []  # the id of every Register call

    def register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterResponse:
        with self.lock:
            self.attempts.append(request.id)
            busy, self.unavailable = self.unavailable > 0, max(0, self.unavailable - 1)
        if busy:
            context.abort(grpc.StatusCode.UNAVAILABLE, "starting up")
        if self.refuse:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "service 'nope' is not declared")
        with self.lock:
            self.registered.append(request)
            wid = request.id or f"w{len(self.registered)}"
            self.live.add(wid)
        return pb.RegisterResponse(id=wid, ttl_seconds=self.ttl_s)

    def heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        with self.lock:
            self.heartbeats += 1
            known = request.id in self.live
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND, "expired")
        return pb.HeartbeatResponse(ttl_seconds=self.ttl_s)

    def deregister(self, request: pb.DeregisterRequest, context: Any) -> pb.DeregisterResponse:
        with self.lock:
            self.live.discard(request.id)
            self.deregistered.append(request.id)
        return pb.DeregisterResponse()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        def method(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            "meshlib.registry.v1.Registry",
            {
                "Register": method(self.register, pb.RegisterRequest, pb.RegisterResponse),
                "Heartbeat": method(self.heartbeat, pb.HeartbeatRequest, pb.HeartbeatResponse),
                "Deregister": method(self.deregister, pb.DeregisterRequest, pb.DeregisterResponse),
            },
        )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[FakeRegistry, Path]]:
    fake = FakeRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port("127.0.0.1:0")
    server.add_generic_rpc_handlers((fake.handler(),))
    server.start()
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {"server_uri": f"127.0.0.1:{port}", "channel_creds": [{"type": "insecure"}]}
                ],
                "node": {"id": "test-node", "locality": {"region": "r1", "zone": "z1"}},
            }
        )
    )
    yield fake, bootstrap
    server.stop(None).wait(5)


def test_register_heartbeat_reregister_and_deregister(
    registry: tuple[FakeRegistry, Path],
) -> None:
    fake, bootstrap = registry
    with meshlib.Mesh(bootstrap) as mesh:
        handle = mesh.register("sessions", 50051, labels={"version": "v1"}, target_port=7000)
        request = fake.registered[0]
        assert request.service == "sessions"
        assert request.address == "127.0.0.1"
        assert dict(request.ports) == {50051: 7000}
        assert dict(request.labels) == {"version": "v1"}
        loc = request.locality
        assert (loc.region, loc.zone, loc.sub_zone) == ("r1", "z1", "")
        assert request.locality_path == "r1/z1"  # for control planes before the message
        assert handle.id == request.id != ""  # chosen by the client: retries are idempotent
        assert handle.registered

        eventually(lambda: fake.heartbeats >= 2)
        with fake.lock:
            fake.live.clear()  # the control plane forgot us (restart / expiry)
        eventually(lambda: len(fake.registered) == 2)
        assert fake.registered[1].id == handle.id  # same identity on re-registration
        handle.close()
        handle.close()
        assert not handle.registered
        assert fake.deregistered == [handle.id]

        other = mesh.register("sessions", 50052, address="10.1.2.3")
    # Mesh.close() deregistered the one left open.
    assert fake.deregistered == [handle.id, other.id]
    assert fake.registered[-1].address == "10.1.2.3"


def test_unreachable_control_plane_leaves_it_pending_and_retried(
    registry: tuple[FakeRegistry, Path],
) -> None:
    fake, bootstrap = registry
    fake.unavailable = 3
    with meshlib.Mesh(bootstrap) as mesh:
        handle = mesh.register("sessions", 50051)
        assert not handle.registered
        assert handle.wait_registered(15)
        assert fake.attempts == [handle.id] * 4  # the same id every time
        eventually(lambda: fake.heartbeats >= 1)
    assert fake.deregistered == [handle.id]


def test_pending_registration_closes_without_deregistering(
    registry: tuple[FakeRegistry, Path],
) -> None:
    fake, bootstrap = registry
    fake.unavailable = 1_000_000
    with meshlib.Mesh(bootstrap) as mesh:
        handle = mesh.register("sessions", 50051)
        assert not handle.registered
    assert not handle.wait_registered(0)
    assert fake.deregistered == []


@pytest.mark.parametrize(
    ("locality", "path"),
    [
        (Locality("r1", "z1", "s1"), "r1/z1/s1"),
        (Locality("r1"), "r1"),
        (Locality(zone="z1"), ""),  # no "region/zone" shape: fields only
        (Locality("r1", sub_zone="s1"), ""),
    ],
)
def test_locality_fields_and_the_path_older_control_planes_read(
    locality: Locality, path: str
) -> None:
    request = build_request(service="s", port=80, address="10.0.0.1", locality=locality)
    fields = request.locality
    assert (fields.region, fields.zone, fields.sub_zone) == (
        locality.region,
        locality.zone,
        locality.sub_zone,
    )
    assert request.locality_path == path
    assert not build_request(service="s", port=80, address="10.0.0.1").HasField("locality")


def test_refused_registration_raises(registry: tuple[FakeRegistry, Path]) -> None:
    fake, bootstrap = registry
    fake.refuse = True
    with (
        meshlib.Mesh(bootstrap) as mesh,
        pytest.raises(meshlib.RegistrationError, match="not declared"),
    ):
        mesh.register("nope", 1)
    with meshlib.Mesh(bootstrap) as mesh, pytest.raises(ValueError, match="port 0"):
        mesh.register("sessions", 0)


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [
        ({"port": "50051"}, TypeError, "port must be an int, got '50051'"),
        ({"target_port": 0}, ValueError, "target_port 0 is not in 1..65535"),
        ({"target_port": 50051.0}, TypeError, "target_port must be an int, got 50051.0"),
        ({"labels": "app=x"}, TypeError, "labels must map str to str, got 'app=x'"),
        ({"labels": {"app": 1}}, TypeError, "labels must map str to str, got {'app': 1}"),
        ({"weight": "2"}, TypeError, "weight must be an int"),
        ({"ttl_s": "30s"}, TypeError, "ttl_s must be a number of seconds, got '30s'"),
    ],
)
def test_bad_register_arguments_are_named_before_any_call(
    registry: tuple[FakeRegistry, Path], arguments: dict[str, object], error: type, named: str
) -> None:
    fake, bootstrap = registry
    given: dict[str, Any] = {"service": "sessions", "port": 50051, **arguments}
    with (
        meshlib.Mesh(bootstrap) as mesh,
        pytest.raises(error, match=re.escape(f"register: {named}")),
    ):
        mesh.register(**given)
    assert fake.attempts == []


def test_detect_address_for_loopback() -> None:
    assert detect_address("127.0.0.1:15010") == "127.0.0.1"
    assert detect_address("dns:///127.0.0.1:15010") == "127.0.0.1"
