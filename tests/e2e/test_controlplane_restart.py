"""A control plane restart is invisible to the mesh: registrations and applied config
come back from the store before anything is served, and heartbeats go on against the
new process with the same ids."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

import meshlib
from controlplane import meshctl
from tests.support.backends import WHO, grpc_backends
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

TTL_S = 30.0  # the default; heartbeats every third of it


class CallLoop:
    """Calls ``echo:50051`` over and over on a thread, keeping every failure."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._who = channel.unary_unary(WHO)
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                name = self._who(b"", timeout=5).decode()
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code()}: {exc.details()}")
            else:
                self.answers[name] = self.answers.get(name, 0) + 1
            self._stop.wait(0.01)

    @property
    def calls(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    @contextmanager
    def running(self) -> Iterator[CallLoop]:
        self._thread.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _workloads(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    workloads: list[dict[str, Any]] = httpx.get(f"{cp.admin_url}/v1/workloads", timeout=5).json()[
        "workloads"
    ]
    return workloads


def test_restart_keeps_registrations_and_applied_config_with_zero_failed_calls(
    tmp_path: Path,
) -> None:
    xds, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    data_dir = tmp_path / "data"

    def control_plane() -> Any:
        return running_controlplane(
            None, xds_address=xds, admin_address=admin, extra_args=["--data-dir", str(data_dir)]
        )

    applied = tmp_path / "applied.yaml"
    applied.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: echo}\nspec:\n  hosts: [echo]\n"
        "  http: [{route: [{destination: {host: echo}}], timeout: 4s}]\n"
    )
    with ExitStack() as stack:
        backends = stack.enter_context(grpc_backends(2, prefix="srv"))
        cp = stack.enter_context(control_plane())
        bootstrap = str(cp.write_bootstrap(tmp_path / "bootstrap.json", "restart-client"))
        assert meshctl.main(["apply", "-f", str(applied), "--admin-address", admin]) == 0
        for backend in backends:
            mesh = stack.enter_context(meshlib.Mesh(bootstrap=bootstrap))
            mesh.register("echo", 50051, target_port=backend.port, address="127.0.0.1", ttl_s=TTL_S)
        client = stack.enter_context(meshlib.Mesh(bootstrap=bootstrap))
        loop = stack.enter_context(CallLoop(client.grpc_channel("xds:///echo:50051")).running())
        wait_for(lambda: set(loop.answers) == {"srv0", "srv1"}, timeout=15)
        before = {w["id"] for w in _workloads(cp)}
        assert len(before) == 2

        cp.stop()  # SIGTERM; then at once a new process on the same ports and data dir
        again = stack.enter_context(control_plane())
        assert {w["id"] for w in _workloads(again)} == before
        calls_at_restart = loop.calls

        def beaten_on_new_process() -> bool:
            # A heartbeat grants the full TTL again: each id got one from this process.
            return all(w["expires_in_seconds"] > TTL_S - 1 for w in _workloads(again))

        def client_back() -> bool:
            clients = httpx.get(f"{again.admin_url}/v1/clients", timeout=5).json()["clients"]
            return any(c["node_id"] == "restart-client" for c in clients)

        wait_for(client_back, timeout=15, interval=0.1)
        wait_for(beaten_on_new_process, timeout=TTL_S, interval=0.1)
        assert {w["id"] for w in _workloads(again)} == before
        wait_for(lambda: loop.calls > calls_at_restart + 100, timeout=10)
        got = httpx.get(f"{again.admin_url}/v1/resources/vs/echo", timeout=5).json()
        assert got["metadata"]["resourceVersion"] == "1"
        loop.stop()
    assert loop.failures == []
    assert set(loop.answers) == {"srv0", "srv1"}
