"""Everything the benchmark talks to, each in its own process, on loopback.

An HTTP server and a gRPC server (bench_servers.py), a control plane whose config
names them ``bench-http:8080`` and ``bench-grpc:50051``, and a bootstrap file
from ``meshctl bootstrap``. Servers live outside the measuring process so their
work does not share its interpreter (GIL, event loop, GC).
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

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 20.0
HTTP_HOST, HTTP_PORT = "bench-http", 8080
#: The connection-pool idle timeout of the mesh config; the bare httpx clients keep
#: idle connections as long, so after a concurrent burst both pools hold alike.
POOL_IDLE_TIMEOUT_S = 60
GRPC_HOST, GRPC_PORT = "bench-grpc", 50051


@dataclass(frozen=True)
class Stack:
    http_port: int  # where the HTTP server really listens
    grpc_port: int
    bootstrap: Path


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


def service_entry(host: str, port: int, name: str, protocol: str, target: int) -> dict[str, Any]:
    """``host:port`` served by one endpoint on loopback (``target``)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host, "namespace": "bench"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": port, "name": name, "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {name: target}}],
        },
    }


def register_breakers() -> None:
    """The last resilience feature the config cannot set: a failure-rate breaker per
    service, registered on the client as an application would (never trips here)."""
    for service in (f"{HTTP_HOST}:{HTTP_PORT}", f"{GRPC_HOST}:{GRPC_PORT}"):
        meshlib.breakers.get(service, meshlib.BreakerConfig(failure_rate_threshold=50))


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def mesh_config(http_port: int, grpc_port: int) -> list[dict[str, Any]]:
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
                "namespace": "bench",
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
                "namespace": "bench",
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
        service_entry(HTTP_HOST, HTTP_PORT, "http", "HTTP", http_port),
        routes(HTTP_HOST, HTTP_PORT, "5xx,reset,connect-failure,refused-stream"),
        policy(HTTP_HOST),
        service_entry(GRPC_HOST, GRPC_PORT, "grpc", "GRPC", grpc_port),
        routes(GRPC_HOST, GRPC_PORT, "unavailable,cancelled,resource-exhausted"),
        policy(GRPC_HOST),
    ]


@contextlib.contextmanager
def running_stack(keep_logs: bool = False) -> Iterator[Stack]:
    """Start servers, control plane and bootstrap; stop all of them on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="meshlib-bench-"))
    children: list[_Child] = []

    def start(name: str, argv: list[str]) -> dict[str, Any]:
        child = _Child(name, argv, workdir)
        children.append(child)
        return child.wait_serving()

    failed = True
    try:
        server = [sys.executable, str(HERE / "bench_servers.py")]
        http_port = int(start("http-server", [*server, "http"])["port"])
        grpc_port = int(start("grpc-server", [*server, "grpc"])["port"])
        config = workdir / "mesh.yaml"
        config.write_text(yaml.safe_dump_all(mesh_config(http_port, grpc_port)))
        xds_address = start(
            "controlplane",
            [console_script("mesh-controlplane"), "serve", "--config", str(config),
             "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"],
        )["xds_address"]  # fmt: skip
        bootstrap = workdir / "bootstrap.json"
        subprocess.run(
            [console_script("meshctl"), "bootstrap", "--xds-address", str(xds_address),
             "--node-id", f"bench-{os.getpid()}", "-o", str(bootstrap)],
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        yield Stack(http_port=http_port, grpc_port=grpc_port, bootstrap=bootstrap)
        failed = False
    finally:
        for child in reversed(children):
            child.stop()
        if failed or keep_logs:
            print(f"bench: process logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
