"""``meshctl bootstrap --cert-dir DIR``: the bootstrap's certificates from ``meshctl agent``.

Adds ``certificate_providers.default``, a ``file_watcher`` (gRFC A29) over
``DIR/cert-chain.pem``, ``DIR/key.pem`` and ``DIR/root-cert.pem``, and makes the xDS
server's ``channel_creds`` ``tls`` over the same files (gRFC A65), for the control
plane's secure xDS address. The refresh interval is a tenth of the lifetime of
the certificate already in DIR (1s..600s), 60s when there is none yet, or
``--cert-refresh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshlib.errors import SecurityError
from meshlib.security.pki import load_certificates

CERT_CHAIN_FILE = "cert-chain.pem"
KEY_FILE = "key.pem"
ROOT_CERT_FILE = "root-cert.pem"
DEFAULT_REFRESH_S = 60
MIN_REFRESH_S, MAX_REFRESH_S = 1, 600


def refresh_interval_s(folder: Path) -> int:
    """A tenth of the lifetime of the certificate in ``folder``, within 1s..600s."""
    try:
        leaf = load_certificates((folder / CERT_CHAIN_FILE).read_bytes(), "cert chain")[0]
    except (OSError, SecurityError):
        return DEFAULT_REFRESH_S
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    return int(min(max(lifetime / 10, MIN_REFRESH_S), MAX_REFRESH_S))


def with_cert_dir(
    document: dict[str, Any], folder: Path, refresh_s: float | None = None
) -> dict[str, Any]:
    """``document`` with the file_watcher provider and ``tls`` channel_creds over ``folder``."""
    folder = folder.resolve()
    seconds = int(refresh_s) if refresh_s else refresh_interval_s(folder)
    files = {
        "certificate_file": str(folder / CERT_CHAIN_FILE),
        "private_key_file": str(folder / KEY_FILE),
        "ca_certificate_file": str(folder / ROOT_CERT_FILE),
        "refresh_interval": f"{max(seconds, MIN_REFRESH_S)}s",
    }
    servers = [
        {**server, "channel_creds": [{"type": "tls", "config": dict(files)}]}
        for server in document["xds_servers"]
    ]
    providers = {"default": {"plugin_name": "file_watcher", "config": dict(files)}}
    return {**document, "xds_servers": servers, "certificate_providers": providers}
