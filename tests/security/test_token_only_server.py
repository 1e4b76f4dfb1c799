"""A meshlib server whose only configuration is its join token (``MESH_TOKEN_FILE``, no
bootstrap), as docs/security.md's quick start runs it: it must still watch its inbound
listener and enforce the mesh's AuthorizationPolicy, never serve every caller."""

from __future__ import annotations

from pathlib import Path

import pytest

import meshlib
from tests.security.support import create_token, secure_controlplane
from tests.security.test_client_mtls import STRICT
from tests.serving.inbound_mesh import grpc_answer, grpc_server
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

CONFIG = (
    """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sessions, namespace: conference}
spec:
  hosts: [sessions]
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: sessions}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: conference}
spec:
  selector: {matchLabels: {app: sessions}}
  action: DENY
  rules: [{to: [{operation: {paths: [/test.Echo/Admin]}}]}]
---
"""
    + STRICT
)


def test_a_server_with_only_a_token_enforces_the_authorization_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GRPC_XDS_BOOTSTRAP", "GRPC_XDS_BOOTSTRAP_CONFIG", "MESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "mesh.yaml"
    config.write_text(CONFIG)
    with secure_controlplane(tmp_path, config=config) as cp:
        token_file = tmp_path / "sessions.token"
        token_file.write_text(create_token(cp, "sessions"))
        monkeypatch.setenv("MESH_TOKEN_FILE", str(token_file))
        with meshlib.Mesh() as server_mesh:
            port = free_port()
            with grpc_server(server_mesh, port, server_mesh.server_credentials()):
                server_mesh.register(
                    "sessions", 50051, labels={"app": "sessions"}, target_port=port,
                    address="127.0.0.1",
                )  # fmt: skip
                monkeypatch.delenv("MESH_TOKEN_FILE")
                with meshlib.Mesh(token=create_token(cp, "app")) as client:
                    channel = client.grpc_channel("xds:///sessions:50051")
                    wait_for(
                        lambda: grpc_answer(channel, "/test.Echo/Get", {}).startswith("OK"),
                        timeout=20, what="the allowed call",
                    )  # fmt: skip
                    assert grpc_answer(channel, "/test.Echo/Admin", {}) == "PERMISSION_DENIED"
