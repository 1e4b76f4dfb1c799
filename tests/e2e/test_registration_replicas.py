"""mesh.register() through a bootstrap listing two control-plane replicas on one etcd:
when the replica it heartbeats to is SIGKILLed, the heartbeats go to the survivor (the
registration, same id, outlives its TTL) and a client calling it fails no call."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

import meshlib
from tests.e2e.test_controlplane_replicas import (
    FOLLOW_S,
    bootstrap_for,
    expires_in,
    replicas,
    two_following,
    workload_ids,
)
from tests.e2e.test_controlplane_restart import CallLoop
from tests.support.backends import grpc_backends
from tests.support.etcd import etcd_cluster, require_etcd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TTL_S = 3.0  # heartbeats every second


@pytest.fixture(autouse=True)
def _etcd_installed() -> None:
    require_etcd()


def test_killing_the_heartbeat_replica_keeps_the_registration_alive(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path))
        one, two = stack.enter_context(replicas(cluster))
        (backend,) = stack.enter_context(grpc_backends(1, prefix="srv"))
        server = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([one, two], tmp_path / "s.json", "server"))
        )
        registration = server.register(
            "echo", 50051, target_port=backend.port, address="127.0.0.1", ttl_s=TTL_S
        )
        assert registration.registered and registration.server_index == 0
        two_following(one, two, {registration.id})
        client = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([two], tmp_path / "c.json", "client"))
        )
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0"}, timeout=FOLLOW_S, what="srv0 via two")

        one.proc.kill()  # SIGKILL: the replica the heartbeats go to
        one.proc.wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(lambda: registration.server_index == 1, timeout=FOLLOW_S, what="the move")
        # Well past the TTL the heartbeats at one would have left it: still there, same id,
        # its expiry kept fresh by heartbeats at two, and calls going on.
        wait_for(
            lambda: time.monotonic() > killed_at + 2 * TTL_S,
            timeout=4 * TTL_S,
            what="twice the TTL",
        )
        assert workload_ids(two) == {registration.id}
        assert expires_in(two, registration.id) > 0
        assert registration.registered
        calls = loop.calls
        wait_for(lambda: loop.calls > calls + 100, timeout=10, what="more calls")
        loop.stop()
        registration.close()
        wait_for(lambda: workload_ids(two) == set(), timeout=FOLLOW_S, what="deregistered")
        assert httpx.get(f"{two.admin_url}/readyz", timeout=5).status_code == 200
    assert loop.failures == []
