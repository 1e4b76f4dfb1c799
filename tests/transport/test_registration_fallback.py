"""mesh.register() with several xds_servers: the ADS stream's fallback rule (gRFC A71's
order, A95's fallback on reachability only), against real scripted Registry servers.
tests/e2e/test_controlplane_replicas.py runs it against control-plane replicas."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest

import meshlib
from tests.transport.polling import eventually
from tests.transport.test_registration import FakeRegistry

WAIT_S = 15.0


@contextmanager
def serving(fake: FakeRegistry) -> Iterator[tuple[str, grpc.Server]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port("127.0.0.1:0")
    server.add_generic_rpc_handlers((fake.handler(),))
    server.start()
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        server.stop(None).wait(5)


@contextmanager
def refusing() -> Iterator[str]:
    """An address that refuses connections: bound (so no one takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def bootstrap(path: Path, *addresses: str) -> Path:
    servers = [{"server_uri": a, "channel_creds": [{"type": "insecure"}]} for a in addresses]
    path.write_text(json.dumps({"xds_servers": servers, "node": {"id": "fallback"}}))
    return path


def test_an_unreachable_first_server_sends_the_register_to_the_next_at_once(
    tmp_path: Path,
) -> None:
    fake = FakeRegistry()
    with refusing() as dead, serving(fake) as (live, _):
        with meshlib.Mesh(bootstrap(tmp_path / "b.json", dead, live)) as mesh:
            handle = mesh.register("sessions", 50051)
            # Registered before register() returned: no backoff wait in between.
            assert handle.registered and handle.server_index == 1
            assert [r.id for r in fake.registered] == [handle.id]
            eventually(lambda: fake.heartbeats >= 2, WAIT_S)
        assert fake.deregistered == [handle.id]


def test_a_refusal_is_an_answer_not_a_reason_to_fall_back(tmp_path: Path) -> None:
    first, second = FakeRegistry(), FakeRegistry()
    first.refuse = True
    with ExitStack() as stack:
        one, _ = stack.enter_context(serving(first))
        two, _ = stack.enter_context(serving(second))
        mesh = stack.enter_context(meshlib.Mesh(bootstrap(tmp_path / "b.json", one, two)))
        with pytest.raises(meshlib.RegistrationError, match="not declared"):
            mesh.register("nope", 1)
    assert len(first.attempts) == 1
    assert second.attempts == []


def test_heartbeats_move_to_the_next_server_when_theirs_goes_away(tmp_path: Path) -> None:
    first, second = FakeRegistry(ttl_s=0.3), FakeRegistry(ttl_s=0.3)
    with ExitStack() as stack:
        one, one_server = stack.enter_context(serving(first))
        two, _ = stack.enter_context(serving(second))
        mesh = stack.enter_context(meshlib.Mesh(bootstrap(tmp_path / "b.json", one, two)))
        handle = mesh.register("sessions", 50051)
        assert handle.server_index == 0
        eventually(lambda: first.heartbeats >= 2, WAIT_S)
        assert second.attempts == []

        one_server.stop(None).wait(5)
        # Re-registered at the second under the same id, and heartbeating there.
        eventually(lambda: second.heartbeats >= 2, WAIT_S)
        assert [r.id for r in second.registered] == [handle.id]
        assert handle.registered and handle.server_index == 1
        handle.close()
        assert second.deregistered == [handle.id]


def test_a_round_where_none_answers_waits_then_starts_again_at_the_first(
    tmp_path: Path,
) -> None:
    first, second = FakeRegistry(), FakeRegistry()
    first.unavailable = second.unavailable = 2  # UNAVAILABLE: "cannot be reached"
    with ExitStack() as stack:
        one, _ = stack.enter_context(serving(first))
        two, _ = stack.enter_context(serving(second))
        mesh = stack.enter_context(meshlib.Mesh(bootstrap(tmp_path / "b.json", one, two)))
        handle = mesh.register("sessions", 50051)
        assert not handle.registered  # pending: neither answered
        assert handle.wait_registered(WAIT_S)
        # Rounds: (first, second), (first, second), then first answers.
        assert first.attempts == [handle.id] * 3
        assert second.attempts == [handle.id] * 2
        assert handle.server_index == 0
