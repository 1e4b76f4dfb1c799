"""meshlib clients (httpx sync/async, gRPC sync/aio) with a join token call mTLS-only
servers through the real control plane with STRICT PeerAuthentication: they present
their workload certificate, check the server's SPIFFE ID, and fail an endpoint whose
identity is not the expected one with a clear error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from meshlib import Mesh
from meshlib.errors import MeshError
from meshlib.security import obtain_certificate
from tests.security.mtls_servers import WHO, TlsGrpcBackend, TlsHttpBackend
from tests.security.support import TRUST_DOMAIN, create_token, secure_controlplane
from tests.support.processes import ControlPlaneProcess

pytestmark = pytest.mark.integration

APP_ID = f"spiffe://{TRUST_DOMAIN}/ns/conference/sa/app"
ECHO_ID = f"spiffe://{TRUST_DOMAIN}/ns/conference/sa/echo"


def service(host: str, port: int, protocol: str, backend_port: int, sa: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host}, namespace: conference}}
spec:
  hosts: [{host}]
  ports: [{{number: {port}, name: p, protocol: {protocol}}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: {host}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {host}-1, namespace: conference}}
spec:
  address: 127.0.0.1
  ports: {{p: {backend_port}}}
  labels: {{app: {host}}}
  serviceAccount: {sa}
---
"""


STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: conference}
spec: {mtls: {mode: STRICT}}
"""


@dataclass
class World:
    cp: ControlPlaneProcess
    bootstrap: Path
    http: TlsHttpBackend
    grpc: TlsGrpcBackend


def _certificate(cp: ControlPlaneProcess, sa: str):  # type: ignore[no-untyped-def]
    return obtain_certificate(create_token(cp, sa), ttl_s=3600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mtls")
    config = tmp / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(STRICT)
    with ExitStack() as stack:
        cp = stack.enter_context(secure_controlplane(tmp, config=config))
        echo, intruder = _certificate(cp, "echo"), _certificate(cp, "intruder")
        http = stack.enter_context(TlsHttpBackend("echo-http", echo))
        grpc_backend = stack.enter_context(TlsGrpcBackend("echo-grpc", echo))
        impostor = stack.enter_context(TlsHttpBackend("impostor", intruder))
        impostor_grpc = stack.enter_context(TlsGrpcBackend("impostor-grpc", intruder))
        (config / "services.yaml").write_text(
            service("echo-http", 8080, "HTTP", http.port, "echo")
            + service("echo-grpc", 50051, "GRPC", grpc_backend.port, "echo")
            + service("impostor", 8080, "HTTP", impostor.port, "echo")
            + service("impostor-grpc", 50051, "GRPC", impostor_grpc.port, "echo")
        )
        bootstrap = cp.write_bootstrap(tmp / "bootstrap.json", "mtls-client")
        yield World(cp, bootstrap, http, grpc_backend)


@pytest.fixture
def mesh(world: World) -> Iterator[Mesh]:
    with Mesh(world.bootstrap, token=create_token(world.cp, "app"), ready_timeout_s=15) as m:
        yield m


def test_httpx_sync_and_async_present_the_identity(mesh: Mesh) -> None:
    with mesh.http_client() as client:
        answer = client.get("http://echo-http:8080/x").json()
    assert answer["identity"] == APP_ID
    assert mesh.certificates is not None
    assert answer["serial"] == format(mesh.certificates.current().serial, "x")

    async def call() -> dict[str, str]:
        async with mesh.async_http_client() as client:
            response = await client.get("http://echo-http:8080/y")
            return dict(response.json())

    assert asyncio.run(call())["identity"] == APP_ID


def test_grpc_sync_and_aio_present_the_identity(mesh: Mesh) -> None:
    channel = mesh.grpc_channel("xds:///echo-grpc:50051")
    answer = json.loads(channel.unary_unary(WHO)(b"", timeout=15))
    assert answer["identity"] == APP_ID

    async def call() -> dict[str, str]:
        channel = mesh.aio_grpc_channel("xds:///echo-grpc:50051")
        try:
            return dict(json.loads(await channel.unary_unary(WHO)(b"", timeout=15)))
        finally:
            await channel.close()

    assert asyncio.run(call())["identity"] == APP_ID


def test_a_server_with_another_identity_fails_the_endpoint_clearly(mesh: Mesh) -> None:
    with mesh.http_client() as client:
        response = client.get("http://impostor:8080/x")
    assert response.status_code == 503  # a connect failure, retried, then Envoy's answer
    error = response.extensions["meshlib.error"]
    assert isinstance(error, httpx.ConnectError)
    message = str(error)
    assert f"presents spiffe://{TRUST_DOMAIN}/ns/conference/sa/intruder" in message, message
    assert ECHO_ID in message
    with mesh.http_client(raise_mesh_errors=True) as client, pytest.raises(httpx.ConnectError):
        client.get("http://impostor:8080/x")
    channel = mesh.grpc_channel("xds:///impostor-grpc:50051")
    with pytest.raises(grpc.RpcError) as rpc:
        channel.unary_unary(WHO)(b"", timeout=15)
    assert rpc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "Hostname Verification Check failed" in str(rpc.value.details())


def test_a_mesh_without_identity_refuses_an_mtls_cluster(world: World) -> None:
    with (
        Mesh(world.bootstrap, ready_timeout_s=15) as plain,
        plain.http_client(raise_mesh_errors=True) as client,
        pytest.raises(MeshError, match=r"requires mTLS .* no workload identity"),
    ):
        client.get("http://echo-http:8080/x")


def test_a_meshlib_server_registers_under_its_identity_and_meshlib_calls_it(
    world: World, mesh: Mesh
) -> None:
    """Mesh(token=).register() goes over the secure address proving the identity; the
    registration's identity reaches EDS, so callers expect it (auto mTLS, STRICT)."""
    with Mesh(
        world.bootstrap, token=create_token(world.cp, "sessions"), ready_timeout_s=15
    ) as server_mesh:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((_who_answers("sessions"),))
        port = server.add_secure_port("127.0.0.1:0", server_mesh.server_credentials())
        server.start()
        try:
            server_mesh.register("sessions", 50051, target_port=port, address="127.0.0.1")
            workloads = httpx.get(f"{world.cp.admin_url}/v1/workloads", timeout=10).json()
            identities = {w.get("identity") for w in workloads["workloads"]}
            assert f"spiffe://{TRUST_DOMAIN}/ns/conference/sa/sessions" in identities
            channel = mesh.grpc_channel("xds:///sessions:50051")
            answer = json.loads(channel.unary_unary(WHO)(b"", timeout=15))
            assert answer == {"served_by": "sessions", "identity": APP_ID}
        finally:
            server.stop(None)


def _who_answers(name: str) -> grpc.GenericRpcHandler[Any, Any]:
    def who(_request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = context.auth_context().get("peer_spiffe_id", [b""])[0].decode()
        return json.dumps({"served_by": name, "identity": peer}).encode()

    return grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
