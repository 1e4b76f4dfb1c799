"""A meshlib gRPC server (``mesh.grpc_server()``) enforces the workload's inbound listener
from the real control plane, answering the same AuthorizationPolicy table as grpcio's
own xDS server (``tests/interop/test_grpcio_rbac.py``) — plus JWT, which grpcio does
not validate: meshlib refuses a bad token (UNAUTHENTICATED) and lets a valid one give
a request principal. With mTLS (a server built from test certificates of the mesh
root), principals, namespaces and Consul intentions decide, as for grpcio
(``tests/interop/test_grpcio_intentions.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from controlplane.ca.authority import CertificateAuthority
from tests.controlplane.test_security_config import ENC_KEY
from tests.controlplane.test_security_envoy_jwt import ISSUER, JWKS, OTHER_KEY, token
from tests.interop.security_mesh import INBOUND, TD, mesh_yaml
from tests.interop.test_grpcio_intentions import INTENTIONS
from tests.interop.test_grpcio_rbac import PLAINTEXT_TABLE, POLICIES
from tests.serving.inbound_mesh import (
    AioEcho,
    client_channel,
    controlplane_for,
    grpc_answer,
    grpc_server,
    issue,
    meshlib_mesh,
    settled,
)
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration

#: grpcio's table, as meshlib answers it: the same, except that meshlib validates JWTs.
MESHLIB_PLAINTEXT = [
    (method, headers, "UNAUTHENTICATED" if method == "/test.Echo/Jwt" else want)
    for method, headers, want in PLAINTEXT_TABLE
]

JWT_POLICIES = f"""\
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [attendees]
    jwks: '{JWKS}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  rules:
  - to: [{{operation: {{paths: ["/test.Echo/Public*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/test.Echo/Me"]}}}}]
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/test.Echo/Alice"]}}}}]
  - to: [{{operation: {{paths: ["/test.Echo/Admin"]}}}}]
    when: [{{key: "request.auth.claims[role]", values: ["admin"]}}]
  - from: [{{source: {{notRequestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/test.Echo/Anonymous"]}}}}]
"""


#: The same with the key set as Keycloak publishes it: an RSA-OAEP encryption key first
#: (``use: enc``), which the control plane and meshlib skip, as Envoy does.
KEYCLOAK_JWKS = json.dumps({"keys": [ENC_KEY, *json.loads(JWKS)["keys"]]})
JWT_KEYCLOAK_POLICIES = JWT_POLICIES.replace(JWKS, KEYCLOAK_JWKS)

#: ``spec: {}`` (an ALLOW policy without rules) denies everything.
EMPTY_SPEC = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing, namespace: conference}
spec: {}
"""
EMPTY_TABLE = [
    ("/test.Echo/Who", {}, "PERMISSION_DENIED"),
    ("/test.Echo/Other", {"x-user": "alice"}, "PERMISSION_DENIED"),
]

#: Callers of namespace ``conference`` may call ``/test.Echo/Ns*``, others may not.
NAMESPACES = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: same-namespace, namespace: conference}
spec:
  rules:
  - from: [{source: {namespaces: [conference]}}]
    to: [{operation: {paths: ["/test.Echo/Ns*"]}}]
  - to: [{operation: {paths: ["/test.Echo/Who"]}}]
"""


#: Source IP blocks (the peer address; the calls come from 127.0.0.1).
IP_BLOCKS = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-ip, namespace: conference}
spec:
  rules:
  - from: [{source: {ipBlocks: ["127.0.0.0/8"]}}]
    to: [{operation: {paths: ["/test.Echo/Local"]}}]
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {paths: ["/test.Echo/Remote"]}}]
  - from: [{source: {notIpBlocks: ["127.0.0.1/32"]}}]
    to: [{operation: {paths: ["/test.Echo/NotMe"]}}]
  - to: [{operation: {notPaths: ["/test.Echo/Local", "/test.Echo/Remote", "/test.Echo/NotMe*"]}}]
    when: [{key: source.ip, values: ["127.0.0.1"]}]
"""
IP_TABLE = [
    ("/test.Echo/Local", {}, "OK /test.Echo/Local -"),
    ("/test.Echo/Remote", {}, "PERMISSION_DENIED"),
    ("/test.Echo/NotMe", {}, "PERMISSION_DENIED"),
    ("/test.Echo/Else", {}, "OK /test.Echo/Else -"),  # when source.ip, notPaths
]


def _bearer(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


JWT_TABLE = [
    ("/test.Echo/Public", {}, "OK /test.Echo/Public -"),
    ("/test.Echo/Me", {}, "PERMISSION_DENIED"),  # missing: through authn, no principal
    ("/test.Echo/Me", _bearer(token("bob")), "OK /test.Echo/Me -"),
    ("/test.Echo/Alice", _bearer(token("bob")), "PERMISSION_DENIED"),
    ("/test.Echo/Alice", _bearer(token("alice")), "OK /test.Echo/Alice -"),
    ("/test.Echo/Admin", _bearer(token("bob")), "PERMISSION_DENIED"),
    ("/test.Echo/Admin", _bearer(token("bob", "admin")), "OK /test.Echo/Admin -"),
    ("/test.Echo/Anonymous", {}, "OK /test.Echo/Anonymous -"),  # notRequestPrincipals
    ("/test.Echo/Anonymous", _bearer(token("bob")), "PERMISSION_DENIED"),
    ("/test.Echo/Public", _bearer(token("bob", key=OTHER_KEY)), "UNAUTHENTICATED"),
    ("/test.Echo/Public", _bearer("not-a-jwt"), "UNAUTHENTICATED"),
]


def _table(port: int, table: list[tuple[str, dict[str, str], str]]) -> list[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        settled(lambda: grpc_answer(channel, table[0][0], {}), "UNAVAILABLE")
        return [grpc_answer(channel, method, headers) for method, headers, _ in table]


@pytest.mark.parametrize(
    ("policies", "table"),
    [
        (POLICIES, MESHLIB_PLAINTEXT),
        (JWT_POLICIES, JWT_TABLE),
        (JWT_KEYCLOAK_POLICIES, JWT_TABLE),
        (EMPTY_SPEC, EMPTY_TABLE),
        (IP_BLOCKS, IP_TABLE),
    ],
    ids=["grpcio-table", "jwt", "jwt-keycloak-jwks", "empty-spec", "ip-blocks"],
)
def test_meshlib_grpc_server_enforces_the_table_in_plaintext(
    tmp_path: Path, policies: str, table: list[tuple[str, dict[str, str], str]]
) -> None:
    port = free_port()
    with (
        controlplane_for(tmp_path, mesh_yaml(port, "PERMISSIVE", policies)) as (cp, _),
        meshlib_mesh(cp, tmp_path, "echo-server") as mesh,
        grpc_server(mesh, port),
    ):
        assert _table(port, table) == [want for *_, want in table]
        # The server's own inbound listener shares the LDS world; it is not a service.
        assert mesh.directory.is_member("echo:50051")
        assert not mesh.directory.is_member(INBOUND.format(port=port))


@pytest.mark.parametrize(
    "policies", [POLICIES, INTENTIONS, NAMESPACES], ids=["principals", "intentions", "namespaces"]
)
def test_meshlib_grpc_server_enforces_principals_over_mtls(tmp_path: Path, policies: str) -> None:
    """Server and callers hold X.509-SVIDs from the control plane's CA classes."""
    ca = CertificateAuthority.new_root("cluster.local")
    server = issue(ca, f"{TD}/echo", dns_names=("echo.test",))
    credentials = grpc.ssl_server_credentials(
        [(server.key_pem, server.chain_pem)],
        root_certificates=ca.root_pem,
        require_client_auth=True,
    )
    port = free_port()
    with (
        controlplane_for(tmp_path, mesh_yaml(port, "STRICT", policies)) as (cp, _),
        meshlib_mesh(cp, tmp_path, "echo-server") as mesh,
        grpc_server(mesh, port, credentials),
    ):

        def answers(identity: str, methods: list[tuple[str, dict[str, str]]]) -> list[str]:
            spiffe = identity if identity.startswith("spiffe://") else f"{TD}/{identity}"
            with client_channel(ca, spiffe, port) as channel:
                settled(lambda: grpc_answer(channel, methods[0][0], {}), "UNAVAILABLE")
                return [grpc_answer(channel, m, h) for m, h in methods]

        who, private, secret = "/test.Echo/Who", "/test.Echo/Private", "/test.Echo/Secret"
        if policies is POLICIES:
            assert answers("app", [(who, {}), (private, {}), (secret, {})]) == [
                f"OK {who} {TD}/app",
                f"OK {private} {TD}/app",  # ALLOW by principal
                "PERMISSION_DENIED",  # DENY by path
            ]
            assert answers("other", [(who, {}), (private, {})]) == [
                f"OK {who} {TD}/other",
                "PERMISSION_DENIED",  # not the allowed principal
            ]
            return
        if policies is NAMESPACES:
            outsider = "spiffe://cluster.local/ns/elsewhere/sa/app"
            assert answers("app", [("/test.Echo/Ns1", {})]) == [f"OK /test.Echo/Ns1 {TD}/app"]
            assert answers(outsider, [(who, {}), ("/test.Echo/Ns1", {})]) == [
                f"OK {who} {outsider}",
                "PERMISSION_DENIED",  # another namespace
            ]
            return
        assert answers("app", [(who, {}), (secret, {}), (secret, {"x-admin": "yes"})]) == [
            f"OK {who} {TD}/app",  # no permission matches: Consul's default, allow
            "PERMISSION_DENIED",  # the deny permission
            f"OK {secret} {TD}/app",  # an earlier allow permission matched first
        ]
        assert answers("web", [(who, {}), (secret, {})]) == [
            f"OK {who} {TD}/web",
            f"OK {secret} {TD}/web",
        ]
        assert answers("other", [(who, {})]) == ["PERMISSION_DENIED"]  # the "*" deny


async def test_meshlib_aio_grpc_server_enforces_the_same_table(tmp_path: Path) -> None:
    """``mesh.aio_grpc_server()`` watches its port's listener as the sync server does."""
    port = free_port()
    table = JWT_TABLE
    with (
        controlplane_for(tmp_path, mesh_yaml(port, "PERMISSIVE", JWT_POLICIES)) as (cp, _),
        meshlib_mesh(cp, tmp_path, "echo-server") as mesh,
    ):
        server = mesh.aio_grpc_server()
        server.add_generic_rpc_handlers((AioEcho(),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

                async def answer(method: str, headers: dict[str, str]) -> str:
                    call = channel.unary_unary(method)
                    try:
                        reply = await call(b"", metadata=tuple(headers.items()), timeout=10)
                    except grpc.aio.AioRpcError as error:
                        return str(error.code().name)
                    return f"OK {reply.decode()}"

                for _ in range(200):  # the listener arrives (bounded)
                    if await answer(table[0][0], {}) != "UNAVAILABLE":
                        break
                    await asyncio.sleep(0.1)
                answers = [await answer(method, headers) for method, headers, _ in table]
            assert answers == [want for *_, want in table]
        finally:
            await server.stop(None)
