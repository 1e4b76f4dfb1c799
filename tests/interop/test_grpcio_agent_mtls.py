"""The whole chain with the mesh's own CA: ``mesh-controlplane serve --trust-domain
example.org``, a join token per service account, ``meshctl agent`` writing each cert dir,
``meshctl bootstrap --cert-dir`` (secure xDS address, file_watcher provider, the server
listener template), then grpcio's xDS server and clients talk mTLS as the config says:
SANs and principals in the control plane's trust domain, a plaintext client refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.security_mesh import INBOUND, call, grpcio_server, lds_acked, mesh_yaml
from tests.security.support import create_token, meshctl, run_agent, secure_controlplane
from tests.support.processes import ControlPlaneProcess
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration

TD = "spiffe://example.org/ns/conference/sa"
POLICIES = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: conference}
spec:
  rules:
  - to: [{operation: {paths: ["/test.Echo/Who"]}}]
  - from: [{source: {principals: ["example.org/ns/conference/sa/app"]}}]
    to: [{operation: {paths: ["/test.Echo/Private"]}}]
"""


def agent_bootstrap(cp: ControlPlaneProcess, tmp_path: Path, sa: str) -> Path:
    """A cert dir kept by ``meshctl agent --once`` for ``sa``, and its bootstrap."""
    token = tmp_path / f"{sa}.token"
    token.write_text(create_token(cp, sa))
    certs = tmp_path / f"{sa}-certs"
    done = run_agent(token, certs)
    assert done.returncode == 0, done.stderr
    bootstrap = tmp_path / f"{sa}.json"
    done = meshctl(
        "bootstrap", "--xds-address", cp.secure_xds_address, "--node-id", sa,
        "--cert-dir", str(certs), "-o", str(bootstrap),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return bootstrap


def test_grpcio_mtls_with_agent_certificates(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(mesh_yaml(port, "STRICT", POLICIES))
    with secure_controlplane(tmp_path, config=config) as cp:
        server = agent_bootstrap(cp, tmp_path, "echo")
        with grpcio_server(server, port):
            lds_acked(cp, "echo", INBOUND.format(port=port))
            calls = [("/test.Echo/Who", {}), ("/test.Echo/Private", {})]
            assert call(agent_bootstrap(cp, tmp_path, "app"), calls, "xds") == [
                f"OK /test.Echo/Who {TD}/app",
                f"OK /test.Echo/Private {TD}/app",
            ]
            assert call(agent_bootstrap(cp, tmp_path, "other"), calls, "xds") == [
                f"OK /test.Echo/Who {TD}/other",
                "PERMISSION_DENIED",
            ]
            plain = tmp_path / "plain.json"
            done = meshctl(
                "bootstrap", "--xds-address", cp.xds_address, "--node-id", "plain",
                "-o", str(plain),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert call(plain, calls[:1], "insecure", warmup_s=1) == ["UNAVAILABLE"]
