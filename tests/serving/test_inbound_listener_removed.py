"""A meshlib server whose inbound listener disappears after it arrived (its workload's
registration lapsed while the control plane restarted, or the workload left the config)
keeps enforcing the last policy: it never falls open to serving every caller."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.interop.security_mesh import mesh_yaml
from tests.serving.inbound_mesh import (
    controlplane_for,
    grpc_answer,
    grpc_server,
    meshlib_mesh,
    settled,
)
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

DENY_ADMIN = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: conference}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{to: [{operation: {paths: [/test.Echo/Admin]}}]}]
"""


def _listener_status(dump: dict[str, object], name: str) -> str:
    listeners = dump["types"]["Listener"]["resources"]  # type: ignore[index]
    return next((r["status"] for r in listeners if r["name"] == name), "")


def test_a_listener_that_disappears_keeps_its_last_policy(tmp_path: Path) -> None:
    port = free_port()
    with (
        controlplane_for(tmp_path, mesh_yaml(port, "PERMISSIVE", DENY_ADMIN)) as (cp, config),
        meshlib_mesh(cp, tmp_path, "echo-server") as mesh,
        grpc_server(mesh, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        settled(lambda: grpc_answer(channel, "/test.Echo/Admin", {}), "UNAVAILABLE")
        assert grpc_answer(channel, "/test.Echo/Admin", {}) == "PERMISSION_DENIED"
        config.write_text(mesh_yaml(free_port(), "PERMISSIVE", DENY_ADMIN))  # workload moves
        name = f"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}"
        wait_for(
            lambda: _listener_status(mesh.config_dump(), name) == "DOES_NOT_EXIST",
            timeout=20, what="the listener's removal",
        )  # fmt: skip
        assert grpc_answer(channel, "/test.Echo/Admin", {}) == "PERMISSION_DENIED"
        assert grpc_answer(channel, "/test.Echo/Who", {}).startswith("OK")
