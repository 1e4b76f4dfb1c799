"""Everything the benchmark talks to, each in its own process, on loopback.

An HTTP server and a gRPC server (bench_servers.py), a control plane whose config
names them ``bench-http:8080`` and ``bench-grpc:50051``, and a bootstrap file
from ``meshctl bootstrap``. The control plane is also the CA (``--data-dir``,
``--trust-domain``): two more servers serve mTLS only with a certificate it
issued (``bench-http-mtls:8080``, ``bench-grpc-mtls:50051``, namespace
``bench-mtls`` under a STRICT PeerAuthentication), and a join token for the
client's identity comes with the stack. Servers live outside the measuring
process so their work does not share its interpreter (GIL, event loop, GC).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import meshlib
from meshlib.security import SpiffeId, WorkloadCertificate, obtain_certificate

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 20.0
HTTP_HOST, HTTP_PORT = "bench-http", 8080
#: The connection-pool idle timeout of the mesh config; the bare httpx clients keep
#: idle connections as long, so after a concurrent burst both pools hold alike.
POOL_IDLE_TIMEOUT_S = 60
GRPC_HOST, GRPC_PORT = "bench-grpc", 50051
HTTP_MTLS_HOST, GRPC_MTLS_HOST = "bench-http-mtls", "bench-grpc-mtls"
MTLS_NAMESPACE, TRUST_DOMAIN = "bench-mtls", "example.org"
SERVER_ACCOUNT, CLIENT_ACCOUNT = "bench-server", "bench-client"


@dataclass(frozen=True)
class Stack:
    http_port: int  # where the HTTP server really listens
    grpc_port: int
    bootstrap: Path  # plaintext xDS
    mtls_http_port: int  # where the mTLS-only servers listen
    mtls_grpc_port: int
    secure_xds_address: str
    client_token: str  # a join token for spiffe://TRUST_DOMAIN/ns/bench-mtls/sa/bench-client
    server_identity: SpiffeId  # what the mTLS servers' certificate names
    workdir: Path


class StackError(RuntimeError):
    """A benchmark process did not come up."""


def console_script(name: str) -> str:
    sibling = Path(sys.executable).parent / name
    found = str(sibling) if sibling.exists() else shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found: install the project (pip install -e .)")
    return found


class _Child:
    """A child in its own process group; stdout drained after its serving line."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )

    def wait_serving(self) -> dict[str, Any]:
        """Block until the child prints its serving line (a reader thread keeps the pipe empty)."""
        found: dict[str, Any] = {}
        ready = threading.Event()

        def read() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                if not ready.is_set() and line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        parsed = json.loads(line)
                        if isinstance(parsed, dict) and parsed.get("event") == "serving":
                            found.update(parsed)
                            ready.set()
            ready.set()

        threading.Thread(target=read, name=f"{self.name}-stdout", daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not found:
            raise StackError(f"{self.name} did not start serving; log: {self.log_path}")
        return found

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()


def service_entry(
    host: str, port: int, name: str, protocol: str, target: int, namespace: str = "bench"
) -> dict[str, Any]:
    """``host:port`` served by one endpoint on loopback (``target``); in the mTLS
    namespace the endpoint runs as the server's service account (its identity)."""
    endpoint: dict[str, Any] = {"address": "127.0.0.1", "ports": {name: target}}
    if namespace == MTLS_NAMESPACE:
        endpoint["serviceAccount"] = SERVER_ACCOUNT
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "ports": [{"number": port, "name": name, "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": [endpoint],
        },
    }


def register_breakers() -> None:
    """The last resilience feature the config cannot set: a failure-rate breaker per
    service, registered on the client as an application would (never trips here)."""
    for host, port in (
        (HTTP_HOST, HTTP_PORT), (GRPC_HOST, GRPC_PORT),
        (HTTP_MTLS_HOST, HTTP_PORT), (GRPC_MTLS_HOST, GRPC_PORT),
    ):  # fmt: skip
        service = f"{host}:{port}"
        meshlib.breakers.get(service, meshlib.BreakerConfig(failure_rate_threshold=50))


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def mesh_config(
    http_port: int, grpc_port: int, mtls_http_port: int, mtls_grpc_port: int
) -> list[dict[str, Any]]:
    """The plaintext services (namespace bench) and the mTLS ones (namespace bench-mtls,
    STRICT), all with the same resilience features."""
    strict = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": MTLS_NAMESPACE},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    return [
        *services_config(HTTP_HOST, http_port, GRPC_HOST, grpc_port, "bench"),
        *services_config(
            HTTP_MTLS_HOST, mtls_http_port, GRPC_MTLS_HOST, mtls_grpc_port, MTLS_NAMESPACE
        ),
        strict,
    ]


def services_config(
    http_host: str, http_port: int, grpc_host: str, grpc_port: int, namespace: str
) -> list[dict[str, Any]]:
    """Both services with every resilience feature on, as a production mesh would run them.

    Route timeout, retries with a per-try timeout, a local rate limit (never
    reached), fault injection that requests opt into by header (none do here),
    Envoy circuit-breaker thresholds, a retry budget and outlier detection.
    :func:`register_breakers` adds a failure-rate breaker per service on the client.
    """

    def routes(host: str, port: int, retry_on: str) -> dict[str, Any]:
        limit = {"maxTokens": 1_000_000, "fillInterval": "1s", "tokensPerFill": 1_000_000}
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": host,
                "namespace": namespace,
                "annotations": {
                    "meshlib.dev/local-rate-limit": _json(limit),
                    "meshlib.dev/fault-headers": _json({"enabled": True}),
                },
            },
            "spec": {
                "hosts": [host],
                "http": [
                    {
                        "timeout": "10s",
                        "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": retry_on},
                        "route": [{"destination": {"host": host, "port": {"number": port}}}],
                    }
                ],
            },
        }

    def policy(host: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {
                "name": host,
                "namespace": namespace,
                "annotations": {
                    "meshlib.dev/retry-budget": _json(
                        {"budgetPercent": 20, "minRetryConcurrency": 3}
                    ),
                },
            },
            "spec": {
                "host": host,
                "trafficPolicy": {
                    "connectionPool": {
                        "tcp": {"maxConnections": 10_000, "connectTimeout": "1s"},
                        "http": {
                            "http1MaxPendingRequests": 10_000,
                            "http2MaxRequests": 10_000,
                            "maxRetries": 100,
                            "idleTimeout": f"{POOL_IDLE_TIMEOUT_S}s",
                        },
                    },
                    "outlierDetection": {
                        "consecutive5xxErrors": 5,
                        "interval": "10s",
                        "baseEjectionTime": "30s",
                    },
                },
            },
        }

    return [
        service_entry(http_host, HTTP_PORT, "http", "HTTP", http_port, namespace),
        routes(http_host, HTTP_PORT, "5xx,reset,connect-failure,refused-stream"),
        policy(http_host),
        service_entry(grpc_host, GRPC_PORT, "grpc", "GRPC", grpc_port, namespace),
        routes(grpc_host, GRPC_PORT, "unavailable,cancelled,resource-exhausted"),
        policy(grpc_host),
    ]


def create_token(admin_address: str, service_account: str) -> str:
    """``meshctl token create`` for ``service_account`` in the mTLS namespace."""
    done = subprocess.run(
        [console_script("meshctl"), "token", "create", "--service-account", service_account,
         "--namespace", MTLS_NAMESPACE, "--admin-address", admin_address],
        check=True, capture_output=True, text=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip
    return done.stdout.strip()


def write_cert_dir(folder: Path, certificate: WorkloadCertificate) -> Path:
    """The three files ``meshctl agent`` keeps, for servers and clients that read files."""
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "key.pem").write_bytes(certificate.key_pem)
    (folder / "cert-chain.pem").write_bytes(certificate.chain_pem)
    (folder / "root-cert.pem").write_bytes(certificate.root_pem)
    return folder


@contextlib.contextmanager
def running_stack(keep_logs: bool = False) -> Iterator[Stack]:
    """Start control plane, servers and bootstrap; stop all of them on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="meshlib-bench-"))
    children: list[_Child] = []

    def start(name: str, argv: list[str]) -> dict[str, Any]:
        child = _Child(name, argv, workdir)
        children.append(child)
        return child.wait_serving()

    failed = True
    try:
        # The config folder is the work dir (watched; its only YAML file is mesh.yaml,
        # written once the servers listen; retry_storm.py rewrites it).
        config = workdir / "mesh.yaml"
        plane = start(
            "controlplane",
            [console_script("mesh-controlplane"), "serve", "--config", str(workdir),
             "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
             "--secure-xds-address", "127.0.0.1:0", "--allow-empty-config",
             "--data-dir", str(workdir / "controlplane"), "--trust-domain", TRUST_DOMAIN],
        )  # fmt: skip
        admin = str(plane["admin_address"])
        server_cert = obtain_certificate(create_token(admin, SERVER_ACCOUNT), ttl_s=24 * 3600)
        certs = str(write_cert_dir(workdir / "certs-server", server_cert))
        server = [sys.executable, str(HERE / "bench_servers.py")]
        ports = [
            int(start(f"{kind}-server{suffix}", [*server, kind, *tls])["port"])
            for suffix, tls in (("", []), ("-mtls", ["--cert-dir", certs]))
            for kind in ("http", "grpc")
        ]
        staged = config.with_suffix(".tmp")
        staged.write_text(yaml.safe_dump_all(mesh_config(*ports)))
        staged.replace(config)
        bootstrap = workdir / "bootstrap.json"
        subprocess.run(
            [console_script("meshctl"), "bootstrap", "--xds-address", str(plane["xds_address"]),
             "--node-id", f"bench-{os.getpid()}", "-o", str(bootstrap)],
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        assert server_cert.identity is not None
        yield Stack(
            http_port=ports[0],
            grpc_port=ports[1],
            bootstrap=bootstrap,
            mtls_http_port=ports[2],
            mtls_grpc_port=ports[3],
            secure_xds_address=str(plane["secure_xds_address"]),
            client_token=create_token(admin, CLIENT_ACCOUNT),
            server_identity=server_cert.identity,
            workdir=workdir,
        )
        failed = False
    finally:
        for child in reversed(children):
            child.stop()
        if failed or keep_logs:
            print(f"bench: process logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
