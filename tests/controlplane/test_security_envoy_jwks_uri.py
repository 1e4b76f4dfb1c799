"""RequestAuthentication ``jwksUri`` end to end: the control plane fetches the key set
from a real HTTP server, pushes it inline to an Envoy sidecar, and a key rotation at the
uri reaches Envoy's enforcement (the new key's tokens accepted, the old key's refused
with 401) within the refresh interval; when the uri then fails, the last good keys stay
in force and the failure is shown in ``GET /v1/config`` (naming the uri) and counted in
``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.controlplane.jwks_server import JwksServer, jwks_of, jwks_server
from tests.controlplane.test_security_envoy_jwt import _synced
from tests.support.backends import http_backends
from tests.support.envoy import running_envoy_sidecar
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

ISSUER = "https://issuer.example"
KEY_A, KEY_B = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
FOLLOW_S = 20.0  # a bound: the refresh is every second


def mesh_yaml(app_port: int, uri: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: attendees, namespace: conference}}
spec:
  hosts: [attendees]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {app_port}}}, labels: {{app: attendees}}}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: attendees}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {uri}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: attendees}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/me/*"]}}}}]
"""


def token(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    claims = {"iss": ISSUER, "sub": "alice", "exp": int(time.time()) + 86_400}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


@dataclass
class Sidecar:
    cp: ControlPlaneProcess
    inbound: str
    keys: JwksServer

    def status(self, bearer: str | None) -> int:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        deadline = time.monotonic() + 10
        while True:  # Envoy binds its inbound listener right after the ACK
            try:
                return httpx.get(f"{self.inbound}/me/a", headers=headers, timeout=5).status_code
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)

    def jwks_status(self) -> dict[str, object]:
        config = httpx.get(self.cp.admin_url + "/v1/config", timeout=5).json()
        (state,) = config["jwks"]
        return dict(state)


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[Sidecar]:
    with jwks_server(jwks_of(("a", KEY_A))) as keys, http_backends(1) as backends:
        config = tmp_path / "mesh.yaml"
        config.write_text(mesh_yaml(backends[0].port, keys.uri))
        port = free_port()
        metadata = {
            "mesh.inbound_port": port,
            "mesh.app_port": backends[0].port,
            "NAMESPACE": "conference",
        }
        with (
            running_controlplane(config, extra_args=["--jwks-refresh", "1s"]) as cp,
            running_envoy_sidecar(
                tmp_path / "envoy", cp.xds_address, "attendees-sidecar",
                labels={"app": "attendees"}, metadata=metadata,
            ),
        ):  # fmt: skip
            _synced(cp, "attendees-sidecar")
            yield Sidecar(cp, f"http://127.0.0.1:{port}", keys)


def _eventually(probe: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + FOLLOW_S
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_key_rotation_at_the_jwks_uri_reaches_envoy(sidecar: Sidecar) -> None:
    old, new = token(KEY_A, "a"), token(KEY_B, "b")
    assert sidecar.status(old) == 200  # fetched before the first push
    assert sidecar.status(new) == 401
    assert sidecar.status(None) == 403  # no token: no request principal
    assert sidecar.jwks_status()["keys"] == 1

    sidecar.keys.body = jwks_of(("b", KEY_B))
    _eventually(lambda: sidecar.status(new) == 200, "the new key's token accepted")
    assert sidecar.status(old) == 401

    sidecar.keys.status = 500
    _eventually(lambda: sidecar.jwks_status()["last_error"] is not None, "the failure shown")
    assert sidecar.jwks_status()["last_error"] == f"jwksUri {sidecar.keys.uri}: HTTP 500"
    assert sidecar.status(new) == 200  # the last good keys stay in force
    metrics = httpx.get(sidecar.cp.admin_url + "/metrics", timeout=5).text
    assert 'mesh_controlplane_jwks_fetches_total{result="error"}' in metrics
    assert 'mesh_controlplane_jwks_fetches_total{result="error"} 0' not in metrics
