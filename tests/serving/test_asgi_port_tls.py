"""An ASGI server's port against its inbound listener's mode: uvicorn serving TLS on a
port the mesh says is plaintext (PERMISSIVE, DISABLE) fails every mesh client's
handshake (they connect in plaintext) while the server sees nothing, so MeshMiddleware
says so once a TLS request shows the port's TLS and the listener has arrived (in
either order) — the warning gRPC servers give (``test_inbound_port_tls.py``). Real
control plane and uvicorn on loopback."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.controlplane import test_security_envoy as envoy_rbac
from tests.serving.inbound_mesh import https_client, meshlib_http, settled
from tests.serving.test_inbound_http import _rbac_yaml
from tests.support.spiffe_certs import make_root, write_svid

pytestmark = pytest.mark.integration

MISMATCH = "inbound_port_tls_mismatch"


def _status(client: httpx.Client, path: str) -> int:
    return client.get(path).status_code


@pytest.mark.parametrize(("mode", "warned"), [("PERMISSIVE", True), ("STRICT", False)])
def test_a_tls_asgi_port_the_mesh_calls_plaintext_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="meshlib.serving.inbound_policy")
    root = make_root()
    certs = write_svid(root, envoy_rbac.SESSIONS, tmp_path / "server-certs")
    yaml = partial(_rbac_yaml, certs=certs, mode=mode)
    with (
        meshlib_http(tmp_path, yaml, tls=certs) as server,
        https_client(root, envoy_rbac.APP, tmp_path / "callers", server.url) as client,
    ):
        settled(lambda: _status(client, "/public/warm"), 503)  # the listener has arrived
        assert _status(client, "/public/a") == 200
        found = [r.getMessage() for r in caplog.records if r.getMessage().startswith(MISMATCH)]
    if not warned:
        assert found == []
        return
    assert found, "no inbound_port_tls_mismatch warning"
    assert all(f":{server.port}'" in m for m in found)
    assert "port='TLS (ASGI server)'" in found[0]
    assert "mesh='plaintext (PERMISSIVE or DISABLE)'" in found[0]
    assert "serve the port without TLS, or make the workload STRICT" in found[0]
