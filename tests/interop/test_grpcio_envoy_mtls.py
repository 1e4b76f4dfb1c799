"""One mesh, two data planes: a grpcio xDS client (xds_channel_credentials, certificates
from its cert dir) calls a gRPC server behind an Envoy sidecar's inbound listener. The
client's CDS says mTLS to the sidecar's SPIFFE ID (STRICT), Envoy terminates it with its
cert dir's certificate, enforces the AuthorizationPolicy on the client's principal (a
denial is gRPC PERMISSION_DENIED) and forwards h2 to the application."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.security_bootstrap import write_bootstrap
from tests.interop.security_mesh import call
from tests.support.backends import grpc_backends
from tests.support.envoy import running_envoy_sidecar
from tests.support.processes import running_controlplane
from tests.support.security_yaml import peer_authentication, workload_with_account
from tests.support.spiffe_certs import make_root, write_svid
from tests.support.waiting import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

TD = "spiffe://cluster.local/ns/conference/sa"


def mesh_yaml(inbound_port: int) -> str:
    workload = workload_with_account(
        "sessions", "sessions-sidecar", number=50051, protocol="GRPC", port=inbound_port
    )
    return f"{workload}---\n{peer_authentication('STRICT')}---\n{POLICY}"


POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sessions, namespace: conference}
spec:
  selector: {matchLabels: {app: sessions}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/conference/sa/app"]}}]
"""


def test_grpcio_client_calls_through_an_envoy_sidecar_over_mtls(tmp_path: Path) -> None:
    root = make_root()
    inbound = free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(mesh_yaml(inbound))
    metadata = {
        "mesh.inbound_port": inbound,
        "mesh.cert_dir": str(write_svid(root, f"{TD}/sessions", tmp_path / "sidecar")),
        "NAMESPACE": "conference",
    }
    with (
        grpc_backends(1, prefix="sessions-") as backends,
        running_controlplane(config) as cp,
        running_envoy_sidecar(
            tmp_path / "envoy", cp.xds_address, "sessions-sidecar",
            labels={"app": "sessions"}, metadata={**metadata, "mesh.app_port": backends[0].port},
        ),
    ):  # fmt: skip
        calls = [("/test.Echo/Who", {})]
        for sa, want in (("app", "OK sessions-0"), ("other", "PERMISSION_DENIED")):
            certs = write_svid(root, f"{TD}/{sa}", tmp_path / sa)
            bootstrap = write_bootstrap(tmp_path / f"{sa}.json", cp.xds_address, sa, certs)
            assert call(bootstrap, calls, "xds", target="xds:///sessions:50051") == [want], sa
