"""RequestAuthentication through an Envoy sidecar: the control plane's JWT filter and
RBAC metadata matchers give Istio's behaviour: a valid token gives a request principal,
a missing one passes without, an invalid one is refused with 401; AuthorizationPolicy
``requestPrincipals`` and ``request.auth.claims`` decide the rest (403)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.backends import http_backends
from tests.support.envoy import running_envoy_sidecar
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

ISSUER = "https://issuer.example"
KEY = ec.generate_private_key(ec.SECP256R1())
JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
JWKS = json.dumps({"keys": [{**JWK, "kid": "k1", "alg": "ES256", "use": "sig"}]})


def mesh_yaml(app_port: int) -> str:
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
    audiences: [attendees]
    jwks: '{JWKS}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: attendees}}}}
  rules:
  - to: [{{operation: {{paths: ["/public/*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/me/*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/alice/*"]}}}}]
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
    when: [{{key: "request.auth.claims[role]", values: ["admin"]}}]
"""


def token(sub: str, role: str = "user", *, key: ec.EllipticCurvePrivateKey = KEY) -> str:
    claims = {"iss": ISSUER, "sub": sub, "aud": "attendees", "role": role}
    # A day: tables of tokens are minted at import, and a whole CI run may pass before use.
    claims["exp"] = int(time.time()) + 86_400
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture
def inbound(tmp_path: Path) -> Iterator[str]:
    with http_backends(1, prefix="attendees-") as backends:
        config = tmp_path / "mesh.yaml"
        config.write_text(mesh_yaml(backends[0].port))
        port = free_port()
        metadata = {
            "mesh.inbound_port": port,
            "mesh.app_port": backends[0].port,
            "NAMESPACE": "conference",
        }
        with (
            running_controlplane(config) as cp,
            running_envoy_sidecar(
                tmp_path / "envoy", cp.xds_address, "attendees-sidecar",
                labels={"app": "attendees"}, metadata=metadata,
            ),
        ):  # fmt: skip
            _synced(cp, "attendees-sidecar")
            yield f"http://127.0.0.1:{port}"


def _synced(cp: ControlPlaneProcess, node: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        for client in httpx.get(cp.admin_url + "/v1/clients", timeout=5).json()["clients"]:
            if client["node_id"] == node:
                for type_url, status in client["types"].items():
                    assert not status["last_nack"], f"{node} NACKed {type_url}: {status}"
                if sorted(client["status"].values()) == ["SYNCED"] * 4:
                    return
        assert time.monotonic() < deadline, f"{node} never ACKed everything"
        time.sleep(0.1)


OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
TABLE = [
    ("/public/a", None, 200),
    ("/me/a", None, 403),  # no token: allowed through authn, no request principal
    ("/me/a", token("bob"), 200),
    ("/alice/a", token("bob"), 403),
    ("/alice/a", token("alice"), 200),
    ("/admin/a", token("bob"), 403),
    ("/admin/a", token("bob", "admin"), 200),  # request.auth.claims[role]
    ("/public/a", token("bob", key=OTHER_KEY), 401),  # a bad signature: refused at authn
    ("/public/a", "not-a-jwt", 401),
]


def test_envoy_enforces_request_authentication(inbound: str) -> None:
    with httpx.Client(base_url=inbound, timeout=5) as client:
        deadline = time.monotonic() + 10
        while True:  # Envoy binds its inbound listener right after the ACK
            try:
                client.get("/public/warm")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        for path, bearer, status in TABLE:
            headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
            response = client.get(path, headers=headers)
            assert response.status_code == status, (path, bearer, response.text)
