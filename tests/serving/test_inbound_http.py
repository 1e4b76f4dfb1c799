"""An ASGI app behind ``MeshMiddleware(app, mesh=mesh, port=PORT)`` under uvicorn enforces
the workload's inbound listener from the real control plane, answering the same tables
as an Envoy sidecar (``tests/controlplane/test_security_envoy.py`` and
``test_security_envoy_jwt.py``, their configs and tables reused): principals over mTLS,
paths with wildcards, methods, headers, DENY before ALLOW, intentions, JWT valid /
invalid / missing with request principals and claims. A policy edit applies to new
requests."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.controlplane import test_security_envoy as envoy_rbac
from tests.controlplane import test_security_envoy_jwt as envoy_jwt
from tests.serving.inbound_mesh import https_client, meshlib_http, settled
from tests.support.spiffe_certs import make_root, write_svid
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _status(client: httpx.Client, path: str, method: str = "GET", **headers: str) -> int:
    return client.request(method, path, headers=headers).status_code


def test_meshlib_http_answers_envoys_jwt_table(tmp_path: Path) -> None:
    with (
        meshlib_http(tmp_path, envoy_jwt.mesh_yaml) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        settled(lambda: _status(client, "/public/warm"), 503)
        for path, bearer, status in envoy_jwt.TABLE:
            headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
            response = client.get(path, headers=headers)
            assert response.status_code == status, (path, bearer, response.text)
            if status == 403:
                assert response.text == "RBAC: access denied"
        forged = envoy_jwt.token("bob", key=envoy_jwt.OTHER_KEY)
        response = client.get("/public/a", headers={"authorization": f"Bearer {forged}"})
        assert response.text == "Jwt verification fails"
        # forwardOriginalToken unset: the app does not see the verified token.
        bob = {"authorization": f"Bearer {envoy_jwt.token('bob')}"}
        seen = json.loads(client.get("/me/a", headers=bob).text)
        assert "authorization" not in seen["headers"]


def test_meshlib_http_answers_envoys_rbac_table_over_mtls(tmp_path: Path) -> None:
    root = make_root()
    certs = write_svid(root, envoy_rbac.SESSIONS, tmp_path / "server-certs")
    yaml = partial(_rbac_yaml, certs=certs, mode="STRICT")
    with meshlib_http(tmp_path, yaml, tls=certs) as server:
        callers = tmp_path / "callers"
        with https_client(root, envoy_rbac.APP, callers, server.url) as app:
            settled(lambda: _status(app, "/public/warm"), 503)
            seen = json.loads(app.get("/public/a").text)
            assert seen["peer"] == envoy_rbac.APP  # the caller's SPIFFE ID reached the app
            assert _status(app, "/public/a", "POST") == 403  # the ALLOW rule is GET only
        for identity, path, headers, status in envoy_rbac.TABLE:
            with https_client(root, identity, callers, server.url) as client:
                response = client.get(path, headers=headers)
            assert response.status_code == status, (identity, path, headers, response.text)
            if status == 403:
                assert response.text == "RBAC: access denied"


def _rbac_yaml(port: int, *, certs: Path, mode: str) -> str:
    """The Envoy test's config; its other service (billing) moves off the app's address:
    a proxyless listener takes the labels of the first endpoint at its IP:PORT, and the
    policies select ``app: sessions`` (the sidecar there gets its labels from its node)."""
    billing = f"endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]"
    text = envoy_rbac.mesh_yaml(port, mode, certs)
    assert billing in text
    return text.replace(billing, "endpoints: [{address: 127.0.0.2, ports: {http: 8443}}]")


def test_meshlib_http_plaintext_table_and_a_policy_edit(tmp_path: Path) -> None:
    certs = tmp_path / "unused-certs"  # the config's DestinationRule names files it never reads
    yaml = partial(_rbac_yaml, certs=certs, mode="PERMISSIVE")
    with (
        meshlib_http(tmp_path, yaml) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        settled(lambda: _status(client, "/public/warm"), 503)
        for path, status in envoy_rbac.PLAINTEXT:  # no principal without mTLS
            assert _status(client, path) == status, path
        assert _status(client, "/public/a", **{"x-block": "1"}) == 403  # DENY wins
        assert _status(client, "/elsewhere") == 403
        text = server.config.read_text()
        server.config.write_text(
            text.replace('paths: ["/public/*"]', 'paths: ["/public/*", "/elsewhere"]')
        )
        # New requests get the new policy (the control plane debounces the file edit).
        wait_for(lambda: _status(client, "/elsewhere") == 200, timeout=20, what="the edit")
        assert _status(client, "/admin/a") == 403  # the rest stays


def _hosts_and_ports_yaml(port: int) -> str:
    return (
        envoy_jwt.mesh_yaml(port)
        + f"""\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: by-host, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: attendees}}}}
  rules:
  - to: [{{operation: {{hosts: ["attendees.example", "*.internal"], paths: ["/hosted"]}}}}]
  - to: [{{operation: {{ports: ["{port}"], paths: ["/this-port"]}}}}]
  - to: [{{operation: {{ports: ["1"], paths: ["/other-port"]}}}}]
  - to: [{{operation: {{methods: ["POST", "PUT"], paths: ["/write/*"]}}}}]
"""
    )


def test_meshlib_http_hosts_ports_and_methods(tmp_path: Path) -> None:
    with (
        meshlib_http(tmp_path, _hosts_and_ports_yaml) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        settled(lambda: _status(client, "/public/warm"), 503)
        assert _status(client, "/hosted", host="attendees.example") == 200
        assert _status(client, "/hosted", host="ATTENDEES.example") == 200  # hosts ignore case
        assert _status(client, "/hosted", host="a.internal") == 200  # *suffix
        assert _status(client, "/hosted", host="elsewhere") == 403
        assert _status(client, "/this-port") == 200  # destination_port: the port served
        assert _status(client, "/other-port") == 403
        assert _status(client, "/write/a", "PUT") == 200
        assert _status(client, "/write/a", "GET") == 403
