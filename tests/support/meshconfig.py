"""Write mesh config files for tests (Istio ServiceEntry YAML)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml


def service_entry(
    host: str,
    port: int,
    endpoint_ports: Sequence[int],
    *,
    protocol: str = "GRPC",
    localities: Sequence[str] | None = None,
) -> dict[str, object]:
    port_name = protocol.lower()
    endpoints: list[dict[str, object]] = []
    for i, ep_port in enumerate(endpoint_ports):
        endpoint: dict[str, object] = {"address": "127.0.0.1", "ports": {port_name: ep_port}}
        if localities:
            endpoint["locality"] = localities[i]
        endpoints.append(endpoint)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host.replace(".", "-"), "namespace": "default"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": port, "name": port_name, "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": endpoints,
        },
    }


def write_config(path: Path, *docs: dict[str, object]) -> Path:
    """Write atomically (rename), as editors and config management do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tmp.replace(path)
    return path
