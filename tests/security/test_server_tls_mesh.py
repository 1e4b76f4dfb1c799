"""A meshlib gRPC server in the real mesh: ``Mesh(token=...)`` gets its certificate from the
control plane's CA, ``mesh.server_credentials()`` serves mTLS with it, and grpcio xDS
clients with ``xds_channel_credentials`` (bootstrap from ``meshctl bootstrap --cert-dir``,
certificates kept by ``meshctl agent``) call it through the control plane's config
(STRICT: CDS mTLS to the server's SPIFFE ID) — while both sides' certificates, issued
for 4 seconds, rotate several times. Then meshlib on both sides: a meshlib client calls a
meshlib ASGI app under uvicorn (``mesh.uvicorn_options()``) and a meshlib gRPC server,
every certificate rotating, no call failing, each app seeing the caller's identity."""

from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

import meshlib
import meshlib.asgi
import meshlib.errors
from meshlib.security.ca_client import obtain_certificate
from meshlib.security.pki import WorkloadCertificate
from tests.interop.security_mesh import call, mesh_yaml
from tests.security.support import MESHCTL, create_token, meshctl, secure_controlplane
from tests.security.test_client_mtls import STRICT, service
from tests.support.asgi_server import serve_asgi
from tests.support.processes import ControlPlaneProcess
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
TD = "spiffe://example.org/ns/conference/sa"
WHO = "/test.Echo/Who"
CALLING_S = 10.0  # the client calls this long: about five renewals at 4 s lifetimes


def _who(request: bytes, context: grpc.ServicerContext) -> bytes:
    return f"{WHO} {meshlib.peer_identity(context)}".encode()


@contextmanager
def meshlib_echo(cp: ControlPlaneProcess, tmp_path: Path, port: int) -> Iterator[meshlib.Mesh]:
    """``echo``'s gRPC server, meshlib's, with the identity of an ``echo`` join token."""
    bootstrap = tmp_path / "echo.json"
    done = meshctl(
        "bootstrap", "--xds-address", cp.xds_address, "--node-id", "echo", "-o", str(bootstrap)
    )
    assert done.returncode == 0, done.stderr
    with meshlib.Mesh(bootstrap=bootstrap, token=create_token(cp, "echo")) as mesh:
        server = mesh.grpc_server(futures.ThreadPoolExecutor(8))
        handler = grpc.unary_unary_rpc_method_handler(_who)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("test.Echo", {"Who": handler})]
        )
        server.add_secure_port(f"127.0.0.1:{port}", mesh.server_credentials())
        server.start()
        try:
            yield mesh
        finally:
            server.stop(grace=None)


@contextmanager
def running_agent(cp: ControlPlaneProcess, tmp_path: Path, sa: str) -> Iterator[Path]:
    """``meshctl agent`` keeping ``sa``'s cert dir fresh; yields the bootstrap over it."""
    token = tmp_path / f"{sa}.token"
    token.write_text(create_token(cp, sa))
    certs = tmp_path / f"{sa}-certs"
    agent = subprocess.Popen(
        [*MESHCTL, "agent", "--token-file", str(token), "--cert-dir", str(certs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        assert json.loads(agent.stdout.readline())["event"] == "certificate_written"
        threading.Thread(target=agent.stdout.read, daemon=True).start()  # keep the pipe drained
        bootstrap = tmp_path / f"{sa}.json"
        done = meshctl(
            "bootstrap", "--xds-address", cp.secure_xds_address, "--node-id", sa,
            "--cert-dir", str(certs), "-o", str(bootstrap),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield bootstrap
    finally:
        agent.terminate()
        agent.communicate(timeout=15)


def presented_serial(port: int, probe: WorkloadCertificate, folder: Path) -> int:
    """The serial a new handshake with the server shows (the probe's own certificate)."""
    (folder / "probe-chain.pem").write_bytes(probe.chain_pem)
    (folder / "probe-key.pem").write_bytes(probe.key_pem)
    context = ssl.create_default_context(cadata=probe.root_pem.decode())
    context.check_hostname = False  # mesh peers are checked by SPIFFE ID, not host name
    context.load_cert_chain(folder / "probe-chain.pem", folder / "probe-key.pem")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_grpcio_xds_clients_call_a_meshlib_server_while_certificates_rotate(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(mesh_yaml(port, "STRICT", ""))
    with (
        secure_controlplane(tmp_path, "--cert-ttl", "4s", config=config) as cp,
        meshlib_echo(cp, tmp_path, port) as mesh,
        running_agent(cp, tmp_path, "app") as bootstrap,
    ):
        assert mesh.certificates is not None
        renewals: queue.Queue[int] = queue.Queue()
        mesh.certificates.subscribe(lambda renewed: renewals.put(renewed.serial))
        probe = obtain_certificate(
            create_token(cp, "probe"), address=cp.secure_xds_address, ttl_s=300
        )
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap), "GRPC_VERBOSITY": "NONE"}
        env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
        client = subprocess.Popen(
            [sys.executable, str(HERE / "grpcio_steady_client.py"), "xds:///echo:50051",
             str(CALLING_S)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "ready", client.stderr
            shown: set[int] = set()
            while client.poll() is None:  # what new handshakes show, while the client calls
                shown.add(presented_serial(port, probe, tmp_path))
                time.sleep(0.25)
            out, err = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate(timeout=10)
        assert client.returncode == 0, err
        result = json.loads(out)
        assert result["failures"] == []
        assert result["replies"] == [f"{WHO} {TD}/app"]
        assert result["calls"] > 100
        renewed = set(renewals.queue)
        assert len(renewed) >= 3, f"the server's certificate was renewed {len(renewed)} times"
        assert len(shown) >= 3 and len(shown & renewed) >= 2  # new handshakes got renewed ones

        plain = tmp_path / "plain.json"
        done = meshctl(
            "bootstrap", "--xds-address", cp.xds_address, "--node-id", "plain", "-o", str(plain)
        )
        assert done.returncode == 0, done.stderr
        assert call(plain, [(WHO, {})], "insecure", warmup_s=1) == ["UNAVAILABLE"]


async def _whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app: answers the caller's SPIFFE ID as its framework reports it."""
    body = str(meshlib.peer_identity(scope)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_meshlib_clients_call_meshlib_servers_while_both_certificates_rotate(
    tmp_path: Path,
) -> None:
    """HTTP (ASGI under uvicorn) and gRPC servers of meshlib, called steadily by a meshlib
    client through a STRICT mesh; every certificate lives 4 s."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(STRICT)
    with secure_controlplane(tmp_path, "--cert-ttl", "4s", config=config) as cp:
        server_bootstrap = cp.write_bootstrap(tmp_path / "echo.json", "echo")
        with meshlib.Mesh(server_bootstrap, token=create_token(cp, "echo")) as server_mesh:
            app = meshlib.asgi.MeshMiddleware(_whoami, mesh=server_mesh)
            rpc = server_mesh.grpc_server(futures.ThreadPoolExecutor(8))
            handler = grpc.unary_unary_rpc_method_handler(_who)
            rpc.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler("test.Echo", {"Who": handler})]
            )
            rpc_port = rpc.add_secure_port("127.0.0.1:0", server_mesh.server_credentials())
            rpc.start()
            try:
                with serve_asgi(app, **server_mesh.uvicorn_options()) as url:
                    http_port = int(url.rsplit(":", 1)[1])
                    (config / "services.yaml").write_text(
                        service("echo-http", 8080, "HTTP", http_port, "echo")
                        + service("echo-grpc", 50051, "GRPC", rpc_port, "echo")
                    )
                    _call_steadily(cp, tmp_path, server_mesh)
            finally:
                rpc.stop(grace=None)


def _call_steadily(cp: ControlPlaneProcess, tmp_path: Path, server_mesh: meshlib.Mesh) -> None:
    assert server_mesh.certificates is not None
    server_serials: queue.Queue[int] = queue.Queue()
    server_mesh.certificates.subscribe(lambda renewed: server_serials.put(renewed.serial))
    bootstrap = cp.write_bootstrap(tmp_path / "app.json", "app")
    with meshlib.Mesh(bootstrap, token=create_token(cp, "app"), ready_timeout_s=20) as mesh:
        assert mesh.certificates is not None
        client_serials: queue.Queue[int] = queue.Queue()
        mesh.certificates.subscribe(lambda renewed: client_serials.put(renewed.serial))
        http = mesh.http_client()
        who = mesh.grpc_channel("xds:///echo-grpc:50051").unary_unary(WHO)
        answers: list[str] = []
        failures: list[str] = []

        def both() -> None:
            response = http.get("http://echo-http:8080/whoami", timeout=10)
            assert response.status_code == 200, response.text
            answers.append(response.text)
            answers.append(bytes(who(b"", timeout=10)).decode())

        for target in ("echo-http:8080", "echo-grpc:50051"):  # the config may still be on its way
            wait_for(lambda t=target: _ready(mesh, t), timeout=30, what=f"{target} in the mesh")
        both()  # ready before the clock matters
        end = time.monotonic() + CALLING_S
        while time.monotonic() < end:
            try:
                both()
            except Exception as exc:  # every failure is recorded, none may happen
                failures.append(repr(exc))
            time.sleep(0.01)
        http.close()
    assert failures == []
    assert set(answers) == {f"{TD}/app", f"{WHO} {TD}/app"}
    assert len(set(server_serials.queue)) >= 3 and len(set(client_serials.queue)) >= 3


def _ready(mesh: meshlib.Mesh, target: str) -> bool:
    try:
        mesh.wait_ready(target, timeout=2)
    except meshlib.errors.RoutingError:
        return False
    return True
