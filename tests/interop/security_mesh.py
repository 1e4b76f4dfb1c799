"""One mesh for the grpcio security interop tests: the real control plane on a YAML file
(ServiceEntry ``echo:50051``, its WorkloadEntry with ``serviceAccount: echo``, a
namespace PeerAuthentication, and the test's policies), grpcio's own xDS server
(``grpcio_xds_server.py``) whose inbound listener is ACKed, and grpcio xDS clients
(``grpcio_secure_client.py``) with bootstraps and test certificates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.interop.security_bootstrap import write_bootstrap
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.security_yaml import peer_authentication, workload_with_account
from tests.support.spiffe_certs import MeshRoot, make_root, write_svid
from tests.support.waiting import free_port

HERE = Path(__file__).parent
TD = "spiffe://cluster.local/ns/conference/sa"
INBOUND = "xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}"


def mesh_yaml(port: int, mode: str, policies: str) -> str:
    workload = workload_with_account("echo", "echo-1", number=50051, protocol="GRPC", port=port)
    return f"{workload}---\n{peer_authentication(mode)}{policies}"


@contextmanager
def grpcio_server(bootstrap: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap), "GRPC_VERBOSITY": "NONE"}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "grpcio_xds_server.py"), str(port)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "serving"
        yield process
    finally:
        try:
            process.communicate(input="", timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


def call(
    bootstrap: Path,
    calls: list[tuple[str, dict[str, str]]],
    creds: str,
    warmup_s: float = 20,
    target: str = "xds:///echo:50051",
) -> list[str]:
    """Run the calls in a grpcio xDS client process: ``"OK <reply>"`` or the code name."""
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap), "GRPC_VERBOSITY": "NONE"}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "grpcio_secure_client.py"),
            target,
            creds,
            str(warmup_s),
        ],
        input=json.dumps(calls),
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout)
    assert isinstance(replies, list)
    return [str(reply) for reply in replies]


def lds_acked(cp: ControlPlaneProcess, node: str, name: str) -> None:
    """The server node ACKed its inbound listener (and NACKed nothing)."""
    deadline = time.monotonic() + 20
    while True:
        for client in httpx.get(cp.admin_url + "/v1/clients", timeout=5).json()["clients"]:
            if client["node_id"] != node:
                continue
            for type_url, status in client["types"].items():
                assert not status["last_nack"], f"{node} NACKed {type_url}: {status}"
            lds = client["types"].get("type.googleapis.com/envoy.config.listener.v3.Listener")
            if lds and lds["status"] == "SYNCED" and name in lds["subscribed"]:
                return
        assert time.monotonic() < deadline, f"{node} never ACKed {name}"
        time.sleep(0.1)


@dataclass(frozen=True)
class Clients:
    """Where client bootstraps (and their certificates) are written."""

    directory: Path
    xds_address: str
    root: MeshRoot

    def bootstrap(self, name: str, identity: str | None) -> Path:
        certs = None
        if identity is not None:
            certs = write_svid(self.root, identity, self.directory / f"{name}-certs")
        return write_bootstrap(self.directory / f"{name}.json", self.xds_address, name, certs)


@contextmanager
def mesh(
    tmp_path: Path, mode: str, server_identity: str | None, policies: str
) -> Iterator[Clients]:
    """The control plane and a grpcio xDS server whose inbound listener is ACKed."""
    port = free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(mesh_yaml(port, mode, policies))
    root = make_root()
    certs = write_svid(root, server_identity, tmp_path / "server") if server_identity else None
    with running_controlplane(config) as cp:
        server_bootstrap = write_bootstrap(
            tmp_path / "server.json", cp.xds_address, "echo-server", certs
        )
        with grpcio_server(server_bootstrap, port):
            lds_acked(cp, "echo-server", INBOUND.format(port=port))
            (tmp_path / "clients").mkdir()
            yield Clients(tmp_path / "clients", cp.xds_address, root)
