"""gRPC bootstraps for the security interop tests: the control plane's plaintext xDS
address, the server listener template (gRFC A36, Istio's name) and, with a cert dir,
the ``default`` file_watcher certificate provider (gRFC A29) over its files."""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"


def write_bootstrap(
    path: Path, xds_address: str, node_id: str, cert_dir: Path | None = None
) -> Path:
    config: dict[str, object] = {
        "xds_servers": [
            {
                "server_uri": xds_address,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "cluster": "interop", "metadata": {"NAMESPACE": "conference"}},
        "server_listener_resource_name_template": TEMPLATE,
    }
    if cert_dir is not None:
        config["certificate_providers"] = {
            "default": {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": str(cert_dir / "cert-chain.pem"),
                    "private_key_file": str(cert_dir / "key.pem"),
                    "ca_certificate_file": str(cert_dir / "root-cert.pem"),
                    "refresh_interval": "5s",
                },
            }
        }
    path.write_text(json.dumps(config))
    return path
