"""Replicas on one etcd (started here from Debian's etcd-server): a change applied or a
registration made at any replica reaches the clients of every replica; a client listing
both in xds_servers moves to the other when its replica is killed, with zero failed
calls and nothing lost; one etcd member of three killed stops nothing; etcd down
altogether: the replica keeps serving, stays ready, and refuses writes with 503."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshlib
from controlplane import meshctl
from tests.controlplane.meshctl_harness import virtual_service, write_yaml
from tests.e2e.test_controlplane_restart import CallLoop
from tests.support.backends import grpc_backends
from tests.support.etcd import EtcdCluster, etcd_cluster, require_etcd
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# Bounded waits, not timings: a follower applies a change well within a second.
FOLLOW_S = 10.0


@pytest.fixture(autouse=True)
def _etcd_installed() -> None:
    require_etcd()


@contextmanager
def replicas(cluster: EtcdCluster, count: int = 2) -> Iterator[list[ControlPlaneProcess]]:
    """``count`` control planes on ``cluster``, without --config (the store's config)."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                running_controlplane(
                    None, extra_args=["--store", cluster.url, "--replica-id", f"r{i}"]
                )
            )
            for i in range(count)
        ]


def register(cp: ControlPlaneProcess, service: str, port: int, ttl_s: float = 60.0) -> str:
    body = {
        "service": service,
        "address": "127.0.0.1",
        "ports": {"50051": port},
        "ttl_seconds": ttl_s,
    }
    answer = httpx.post(f"{cp.admin_url}/v1/workloads", json=body, timeout=5)
    assert answer.status_code == 201, answer.text
    workload_id: str = answer.json()["id"]
    return workload_id


def workload_ids(cp: ControlPlaneProcess) -> set[str]:
    answer = httpx.get(f"{cp.admin_url}/v1/workloads", timeout=5).json()
    return {w["id"] for w in answer["workloads"]}


def connected(cp: ControlPlaneProcess, node: str) -> bool:
    clients = httpx.get(f"{cp.admin_url}/v1/clients", timeout=5).json()["clients"]
    return any(c["node_id"] == node for c in clients)


def apply(cp: ControlPlaneProcess, path: Path) -> None:
    assert meshctl.main(["apply", "-f", str(path), "--admin-address", cp.admin_address]) == 0


def bootstrap_for(servers: list[ControlPlaneProcess], path: Path, node: str) -> str:
    """A bootstrap listing every server, in order (meshctl bootstrap writes the first)."""
    servers[0].write_bootstrap(path, node)
    data: dict[str, Any] = json.loads(path.read_text())
    entry = data["xds_servers"][0]
    data["xds_servers"] = [{**entry, "server_uri": cp.xds_address} for cp in servers]
    path.write_text(json.dumps(data))
    return str(path)


def test_a_change_at_one_replica_reaches_the_clients_of_the_other(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path))
        one, two = stack.enter_context(replicas(cluster))
        backends = stack.enter_context(grpc_backends(2, prefix="srv"))
        first = register(one, "echo", backends[0].port)
        two_following(one, two, {first})
        client = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([two], tmp_path / "b.json", "on-two"))
        )
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0"}, timeout=FOLLOW_S, what="srv0 via two")
        # A registration made at one reaches two's client ...
        second = register(one, "echo", backends[1].port)
        wait_for(lambda: "srv1" in loop.answers, timeout=FOLLOW_S, what="srv1 via two")
        assert second in workload_ids(two)
        # ... and so does config applied at one, and its deletion.
        apply(one, write_yaml(tmp_path / "vs.yaml", virtual_service("echo", timeout="3s")))
        wait_for(
            lambda: (
                httpx.get(f"{two.admin_url}/v1/resources/vs/echo", timeout=5).status_code == 200
            ),
            timeout=FOLLOW_S,
            what="the VirtualService at two",
        )
        assert meshctl.main(["delete", "vs", "echo", "--admin-address", one.admin_address]) == 0
        wait_for(
            lambda: (
                httpx.get(f"{two.admin_url}/v1/resources/vs/echo", timeout=5).status_code == 404
            ),
            timeout=FOLLOW_S,
            what="the deletion at two",
        )
        # A registration made at two (and removed there) is seen at one.
        third = register(two, "other", backends[0].port)
        wait_for(lambda: third in workload_ids(one), timeout=FOLLOW_S, what="two's at one")
        assert httpx.delete(f"{two.admin_url}/v1/workloads/{third}", timeout=5).status_code == 204
        wait_for(lambda: third not in workload_ids(one), timeout=FOLLOW_S, what="the removal")
        loop.stop()
    assert loop.failures == []


def pushes(cp: ControlPlaneProcess) -> float:
    """Every xDS response this replica sent (pilot_xds_pushes, all types)."""
    text = httpx.get(f"{cp.admin_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pilot_xds_pushes{") and "senderr" not in line
    )


def two_following(one: ControlPlaneProcess, two: ControlPlaneProcess, ids: set[str]) -> None:
    """Wait until ``two`` holds the workloads registered at ``one``: a client of two that
    starts sooner finds no such service yet (its calls fail, rightly)."""
    wait_for(lambda: ids <= workload_ids(two), timeout=FOLLOW_S, what="two following one")


def expires_in(cp: ControlPlaneProcess, workload_id: str) -> float:
    answer = httpx.get(f"{cp.admin_url}/v1/workloads", timeout=5).json()
    return next(
        float(w["expires_in_seconds"]) for w in answer["workloads"] if w["id"] == workload_id
    )


def test_a_heartbeat_at_one_replica_pushes_nothing_at_the_other(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path))
        one, two = stack.enter_context(replicas(cluster))
        backends = stack.enter_context(grpc_backends(1, prefix="srv"))
        workload = register(one, "echo", backends[0].port, ttl_s=20.0)
        two_following(one, two, {workload})
        client = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([two], tmp_path / "b.json", "quiet"))
        )
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: connected(two, "quiet") and pushes(two) >= 4, timeout=15, what="sync")
        wait_for(lambda: expires_in(two, workload) < 17.0, timeout=10, what="time passing")
        before = pushes(two)
        beat = httpx.put(f"{one.admin_url}/v1/workloads/{workload}/heartbeat", timeout=5)
        assert beat.status_code == 200
        # Two learns the new expiry (so it would not expire the workload early) ...
        wait_for(lambda: expires_in(two, workload) > 19.0, timeout=FOLLOW_S, what="the expiry")
        # ... and sends its clients nothing: nothing they see changed.
        assert pushes(two) == before
        loop.stop()
    assert loop.failures == []


def test_killing_the_clients_replica_fails_no_call_and_loses_nothing(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path))
        one, two = stack.enter_context(replicas(cluster))
        backends = stack.enter_context(grpc_backends(3, prefix="srv"))
        ids = {register(one, "echo", backends[i].port) for i in range(2)}
        apply(one, write_yaml(tmp_path / "vs.yaml", virtual_service("echo", timeout="4s")))
        bootstrap = bootstrap_for([one, two], tmp_path / "b.json", "ha-client")
        client = stack.enter_context(meshlib.Mesh(bootstrap=bootstrap))
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0", "srv1"}, timeout=15, what="both backends")
        assert connected(one, "ha-client")
        wait_for(lambda: workload_ids(two) == ids, timeout=FOLLOW_S, what="two following one")

        one.proc.kill()  # SIGKILL: no goodbye to clients or etcd
        one.proc.wait(timeout=10)
        calls_at_kill = loop.calls
        wait_for(lambda: connected(two, "ha-client"), timeout=15, interval=0.1, what="failover")
        # Nothing lost: the registrations and the config are all at two ...
        assert workload_ids(two) == ids
        got = httpx.get(f"{two.admin_url}/v1/resources/vs/echo", timeout=5).json()
        assert got["spec"]["http"][0]["timeout"] == "4s"
        # ... and the client now follows two: a backend registered there gets calls.
        register(two, "echo", backends[2].port)
        wait_for(lambda: "srv2" in loop.answers, timeout=FOLLOW_S, what="srv2 via two")
        wait_for(lambda: loop.calls > calls_at_kill + 100, timeout=10, what="more calls")
        loop.stop()
    assert loop.failures == []


def test_one_etcd_member_of_three_killed_stops_nothing(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path, members=3))
        one, two = stack.enter_context(replicas(cluster))
        backends = stack.enter_context(grpc_backends(2, prefix="srv"))
        first = register(one, "echo", backends[0].port)
        two_following(one, two, {first})
        client = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([two], tmp_path / "b.json", "on-two"))
        )
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0"}, timeout=FOLLOW_S, what="srv0 via two")

        cluster.members[0].kill()  # the member both replicas talk to and watch on first
        second = register(one, "echo", backends[1].port)
        wait_for(lambda: "srv1" in loop.answers, timeout=FOLLOW_S, what="srv1 after the kill")
        assert second in workload_ids(two)
        apply(two, write_yaml(tmp_path / "vs.yaml", virtual_service("echo", timeout="3s")))
        wait_for(
            lambda: (
                httpx.get(f"{one.admin_url}/v1/resources/vs/echo", timeout=5).status_code == 200
            ),
            timeout=FOLLOW_S,
            what="two's apply at one",
        )
        loop.stop()
    assert loop.failures == []


def test_etcd_down_while_running_keeps_serving(tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(tmp_path))
        (one,) = stack.enter_context(replicas(cluster, count=1))
        backends = stack.enter_context(grpc_backends(1, prefix="srv"))
        register(one, "echo", backends[0].port)
        client = stack.enter_context(
            meshlib.Mesh(bootstrap=bootstrap_for([one], tmp_path / "b.json", "etcd-down"))
        )
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0"}, timeout=15, what="srv0")

        cluster.members[0].kill()

        def store_problem() -> str | None:
            status = httpx.get(f"{one.admin_url}/v1/config", timeout=5).json()
            problem: str | None = status["store"]["problem"]
            return problem

        problem = wait_for(store_problem, timeout=FOLLOW_S, what="the store's problem shown")
        assert cluster.members[0].endpoint in problem
        assert httpx.get(f"{one.admin_url}/readyz", timeout=5).status_code == 200
        refused = httpx.post(
            f"{one.admin_url}/v1/apply",
            json={"documents": [virtual_service("echo", timeout="3s")]},
            timeout=15,
        )
        assert refused.status_code == 503 and "etcd is unreachable" in refused.text
        calls = loop.calls
        wait_for(lambda: loop.calls > calls + 100, timeout=10, what="calls going on")
        loop.stop()
    assert loop.failures == []
