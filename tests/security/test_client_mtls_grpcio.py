"""meshlib gRPC clients call grpcio's own xDS server (``xds_server_credentials``, its
certificate kept by ``meshctl agent``) through the control plane with STRICT mTLS and
an AuthorizationPolicy: with a join token and no bootstrap at all, and with a bootstrap
from ``meshctl bootstrap --cert-dir`` (tls channel_creds, file_watcher provider). The
server's RBAC sees meshlib's identity: allowed for ``app``, denied for ``other``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from meshlib import Mesh
from tests.interop.security_mesh import INBOUND, grpcio_server, lds_acked, mesh_yaml
from tests.interop.test_grpcio_agent_mtls import POLICIES, TD, agent_bootstrap
from tests.security.support import create_token, secure_controlplane
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration

PRIVATE = "/test.Echo/Private"


def _private(mesh: Mesh) -> bytes:
    channel = mesh.grpc_channel("xds:///echo:50051")
    answer: bytes = channel.unary_unary(PRIVATE)(b"", timeout=20)
    return answer


async def _private_aio(mesh: Mesh) -> bytes:
    channel = mesh.aio_grpc_channel("xds:///echo:50051")
    try:
        answer: bytes = await channel.unary_unary(PRIVATE)(b"", timeout=20)
        return answer
    finally:
        await channel.close()


def test_meshlib_clients_call_a_grpcio_xds_server_over_mtls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "GRPC_XDS_BOOTSTRAP",
        "GRPC_XDS_BOOTSTRAP_CONFIG",
        "MESH_TOKEN",
        "MESH_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(mesh_yaml(port, "STRICT", POLICIES))
    with secure_controlplane(tmp_path, config=config) as cp:
        server = agent_bootstrap(cp, tmp_path, "echo")
        with grpcio_server(server, port):
            lds_acked(cp, "echo", INBOUND.format(port=port))
            expected = f"{PRIVATE} {TD}/app".encode()
            with Mesh(token=create_token(cp, "app"), ready_timeout_s=20) as mesh:
                assert _private(mesh) == expected
                assert asyncio.run(_private_aio(mesh)) == expected
            with Mesh(agent_bootstrap(cp, tmp_path, "app"), ready_timeout_s=20) as mesh:
                assert mesh.certificates is not None  # the bootstrap's file_watcher files
                assert _private(mesh) == expected
            with Mesh(token=create_token(cp, "other"), ready_timeout_s=20) as mesh:
                with pytest.raises(grpc.RpcError) as denied:
                    _private(mesh)
                assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
