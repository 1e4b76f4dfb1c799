"""Rotation under load: meshlib's workload certificate lives 6 seconds (renewed every 3)
while HTTP and gRPC calls (sync and asyncio, short and spanning renewals) run steadily
through the mesh to mTLS-only servers. No call fails, and the servers' new handshakes
show each new certificate's serial."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from meshlib import Mesh
from meshlib.security import obtain_certificate
from meshlib.security.pki import WorkloadCertificate
from tests.security.mtls_servers import WHO, TlsGrpcBackend, TlsHttpBackend
from tests.security.support import create_token, secure_controlplane
from tests.security.test_client_mtls import STRICT, service

pytestmark = pytest.mark.integration

ROTATIONS = 3


def _steady(call: Callable[[], str], stop: threading.Event, failures: list[str]) -> None:
    while not stop.is_set():
        try:
            call()
        except Exception as exc:  # every failure is recorded, none may happen
            failures.append(repr(exc))


def _steady_async(mesh: Mesh, stop: threading.Event, failures: list[str]) -> None:
    """asyncio twins: async httpx and grpc.aio calls, each retried until ``stop``."""

    async def run() -> None:
        channel = mesh.aio_grpc_channel("xds:///echo-grpc:50051")
        who = channel.unary_unary(WHO)
        async with mesh.async_http_client() as client:
            while not stop.is_set():
                try:
                    response = await client.get("http://echo-http:8080/a", timeout=10)
                    assert response.status_code == 200, response.text
                    json.loads(await who(b"", timeout=10))
                except Exception as exc:
                    failures.append(repr(exc))
        await channel.close()

    asyncio.run(run())


def test_rotation_under_steady_calls_fails_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(STRICT)
    with secure_controlplane(tmp_path, "--cert-ttl", "6s", config=config) as cp:
        echo = obtain_certificate(create_token(cp, "echo"), ttl_s=3600)
        with TlsHttpBackend("echo-http", echo) as http, TlsGrpcBackend("echo-grpc", echo) as rpc:
            (config / "services.yaml").write_text(
                service("echo-http", 8080, "HTTP", http.port, "echo")
                + service("echo-grpc", 50051, "GRPC", rpc.port, "echo")
            )
            bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", "rotating-client")
            with Mesh(bootstrap, token=create_token(cp, "app"), ready_timeout_s=20) as mesh:
                keeper = mesh.certificates
                assert keeper is not None
                issued = [keeper.current()]
                rotated = threading.Event()

                def on_change(new: WorkloadCertificate) -> None:
                    issued.append(new)
                    if len(issued) > ROTATIONS:
                        rotated.set()

                keeper.subscribe(on_change)
                client = mesh.http_client()
                channel = mesh.grpc_channel("xds:///echo-grpc:50051")
                who = channel.unary_unary(WHO)

                def http_call() -> str:
                    response = client.get("http://echo-http:8080/x", timeout=10)
                    assert response.status_code == 200, response.text
                    return str(response.json()["serial"])

                def grpc_call() -> str:
                    return str(json.loads(who(b"", timeout=10))["serial"])

                assert http_call() and grpc_call()  # both ready before the clock matters

                def slow_calls() -> str:  # each spans a rotation on its old connection
                    response = client.get("http://echo-http:8080/slow", timeout=10)
                    assert response.status_code == 200, response.text
                    return str(json.loads(who(b"slow", timeout=10))["serial"])

                stop, failures = threading.Event(), []  # type: ignore[var-annotated]
                workers = [
                    threading.Thread(target=_steady, args=(call, stop, failures))
                    for call in (http_call, http_call, grpc_call, grpc_call, slow_calls)
                ]
                workers.append(threading.Thread(target=_steady_async, args=(mesh, stop, failures)))
                for worker in workers:
                    worker.start()
                try:
                    assert rotated.wait(60), f"only {len(issued) - 1} rotations"
                    # one more renewal period so the last certificate is used too
                    threading.Event().wait(3.5)
                finally:
                    stop.set()
                    for worker in workers:
                        worker.join(30)
                client.close()
                assert failures == []
                serials = {format(c.serial, "x") for c in issued}
                for backend in (http, rpc):
                    seen = backend.serials
                    assert set(seen) <= serials
                    assert len(seen) >= ROTATIONS, (backend, seen, serials)
