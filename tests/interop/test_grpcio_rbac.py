"""grpcio's own xDS server (gRFC A36) and client against the control plane's security
config: the server ACKs its inbound listener and enforces the AuthorizationPolicy table
(A41) in plaintext; with PeerAuthentication STRICT, client and server use the mesh
certificates from the bootstrap's file_watcher (A29) through CDS and LDS, principals
are enforced, and a plaintext client is refused.

The certificates are made in the test (``tests/support/spiffe_certs.py``), as X.509-SVIDs
``meshctl agent`` would write into a cert dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.security_mesh import TD, call, mesh

pytestmark = pytest.mark.integration

POLICIES = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: conference}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - to: [{operation: {methods: [POST], paths: ["/test.Echo/Who"]}}]
  - to: [{operation: {paths: ["/test.Echo/Other"]}}]
    when: [{key: "request.headers[x-user]", values: ["alice"]}]
  - from: [{source: {principals: ["cluster.local/ns/conference/sa/app"]}}]
    to: [{operation: {paths: ["/test.Echo/Private*"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/test.Echo/Jwt"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: conference}
spec:
  jwtRules:
  - issuer: https://issuer
    jwks: >-
      {"keys": [{"kty": "EC", "crv": "P-256",
      "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: conference}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["*/Secret"]}}]
  - when: [{key: "request.headers[x-block]", values: ["*"]}]
"""


PLAINTEXT_TABLE = [
    ("/test.Echo/Who", {}, "OK /test.Echo/Who -"),
    ("/test.Echo/Secret", {}, "PERMISSION_DENIED"),  # DENY by path suffix
    ("/test.Echo/Who", {"x-block": "1"}, "PERMISSION_DENIED"),  # DENY beats ALLOW
    ("/test.Echo/Other", {}, "PERMISSION_DENIED"),  # no ALLOW rule matches
    ("/test.Echo/Other", {"x-user": "alice"}, "OK /test.Echo/Other -"),  # when header
    ("/test.Echo/Other", {"x-user": "bob"}, "PERMISSION_DENIED"),
    ("/test.Echo/Private", {}, "PERMISSION_DENIED"),  # needs a principal: no mTLS here
    # grpcio validates no JWT: no request has a request principal, whatever it sends.
    ("/test.Echo/Jwt", {"authorization": "Bearer x.y.z"}, "PERMISSION_DENIED"),
]


def test_grpcio_xds_server_enforces_rbac_in_plaintext(tmp_path: Path) -> None:
    with mesh(tmp_path, "PERMISSIVE", None, POLICIES) as clients:
        bootstrap = clients.bootstrap("plain-client", None)
        calls = [(method, headers) for method, headers, _ in PLAINTEXT_TABLE]
        assert call(bootstrap, calls, "insecure") == [want for *_, want in PLAINTEXT_TABLE]


def test_grpcio_mtls_through_cds_and_lds_with_principals(tmp_path: Path) -> None:
    with mesh(tmp_path, "STRICT", f"{TD}/echo", POLICIES) as clients:
        app = clients.bootstrap("app", f"{TD}/app")
        other = clients.bootstrap("other", f"{TD}/other")
        calls = [("/test.Echo/Who", {}), ("/test.Echo/Private", {}), ("/test.Echo/Secret", {})]
        assert call(app, calls, "xds") == [
            f"OK /test.Echo/Who {TD}/app",
            f"OK /test.Echo/Private {TD}/app",
            "PERMISSION_DENIED",
        ]
        assert call(other, calls[:2], "xds") == [
            f"OK /test.Echo/Who {TD}/other",
            "PERMISSION_DENIED",  # not the allowed principal
        ]
        plain = clients.bootstrap("plain", None)
        assert call(plain, calls[:1], "insecure", warmup_s=1) == ["UNAVAILABLE"]


def test_grpcio_client_refuses_a_server_outside_the_expected_sans(tmp_path: Path) -> None:
    """The server presents sa/impostor where the mesh says sa/echo: the handshake fails."""
    with mesh(tmp_path, "STRICT", f"{TD}/impostor", POLICIES) as clients:
        app = clients.bootstrap("app", f"{TD}/app")
        assert call(app, [("/test.Echo/Who", {})], "xds", warmup_s=2) == ["UNAVAILABLE"]
