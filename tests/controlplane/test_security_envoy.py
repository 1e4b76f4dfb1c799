"""An Envoy sidecar on the real control plane takes the security config as xDS: it ACKs
the mTLS clusters (auto mTLS, and a DestinationRule MUTUAL with files) and its inbound
listener with an AUDIT (LOG) filter (no NACK), and its inbound listener enforces
the mode and the AuthorizationPolicy table: plaintext and mTLS callers, principals,
paths, methods, headers, DENY before ALLOW, a ServiceIntentions permission, 403
``RBAC: access denied``."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.backends import Backend, http_backends
from tests.support.envoy import EnvoySidecar, running_envoy_sidecar
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.security_yaml import peer_authentication, workload_with_account
from tests.support.spiffe_certs import MeshRoot, make_root, write_svid
from tests.support.waiting import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

SESSIONS = "spiffe://cluster.local/ns/conference/sa/sessions"
APP = "spiffe://cluster.local/ns/conference/sa/app"
OTHER = "spiffe://cluster.local/ns/conference/sa/other"


def mesh_yaml(app_port: int, mode: str, certs: Path) -> str:
    sessions = workload_with_account(
        "sessions", "sessions-1", number=8080, protocol="HTTP", port=app_port
    )
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: billing, namespace: conference}}
spec:
  hosts: [billing]
  ports: [{{number: 8443, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {app_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: billing, namespace: conference}}
spec:
  host: billing
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: {certs}/cert-chain.pem
      privateKey: {certs}/key.pem
      caCertificates: {certs}/root-cert.pem
      sni: billing.example
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: audit, namespace: conference}}
spec:
  action: AUDIT
  rules: [{{to: [{{operation: {{paths: ["/private/*"]}}}}]}}]
---
{sessions}---
{peer_authentication(mode)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: conference}}
spec:
  selector: {{matchLabels: {{app: sessions}}}}
  rules:
  - to: [{{operation: {{methods: [GET], paths: ["/public/*"]}}}}]
  - from: [{{source: {{principals: ["cluster.local/ns/conference/sa/app"]}}}}]
    to: [{{operation: {{paths: ["/private/*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny, namespace: istio-system}}
spec:
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
  - when: [{{key: "request.headers[x-block]", values: ["*"]}}]
---
apiVersion: consul.hashicorp.com/v1alpha1
kind: ServiceIntentions
metadata: {{name: sessions, namespace: conference}}
spec:
  destination: {{name: sessions}}
  sources:
  - name: other
    permissions:
    - {{action: deny, http: {{pathPrefix: /public/secret}}}}
"""


@dataclass
class Mesh:
    cp: ControlPlaneProcess
    envoy: EnvoySidecar
    inbound_port: int
    root: MeshRoot
    certs: Path
    mode: str

    def client(self, identity: str | None) -> httpx.Client:
        """A caller of the inbound port: plaintext (None) or mTLS as ``identity``."""
        if identity is None:
            return httpx.Client(base_url=f"http://127.0.0.1:{self.inbound_port}", timeout=5)
        directory = write_svid(self.root, identity, self.certs / identity.rsplit("/", 1)[1])
        context = ssl.create_default_context(cafile=str(directory / "root-cert.pem"))
        context.check_hostname = False  # SPIFFE IDs are URIs; the chain is what is checked
        context.load_cert_chain(directory / "cert-chain.pem", directory / "key.pem")
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.inbound_port}", verify=context, timeout=5
        )


@pytest.fixture(params=["PERMISSIVE", "STRICT"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    root = make_root()
    sidecar_certs = write_svid(root, SESSIONS, tmp_path / "sidecar-certs")
    with http_backends(1, prefix="sessions-") as backends:
        app: Backend = backends[0]
        config = tmp_path / "mesh.yaml"
        config.write_text(mesh_yaml(app.port, request.param, sidecar_certs))
        inbound = free_port()
        metadata = {
            "mesh.inbound_port": inbound,
            "mesh.app_port": app.port,
            "mesh.cert_dir": str(sidecar_certs),
            "NAMESPACE": "conference",
        }
        with (
            running_controlplane(config) as cp,
            running_envoy_sidecar(
                tmp_path / "envoy",
                cp.xds_address,
                "sessions-sidecar",
                labels={"app": "sessions"},
                metadata=metadata,
            ) as envoy,
        ):
            yield Mesh(cp, envoy, inbound, root, tmp_path / "callers", request.param)


def _synced(cp: ControlPlaneProcess, node: str) -> None:
    """Wait until the node has ACKed all four types; fail on any NACK."""
    deadline = time.monotonic() + 15
    while True:
        clients = httpx.get(cp.admin_url + "/v1/clients", timeout=5).json()["clients"]
        for client in clients:
            if client["node_id"] != node:
                continue
            for type_url, status in client["types"].items():
                assert not status["last_nack"], f"{node} NACKed {type_url}: {status}"
            if sorted(client["status"].values()) == ["SYNCED"] * 4:
                return
        assert time.monotonic() < deadline, f"{node} never ACKed everything: {clients}"
        time.sleep(0.1)


def _get(client: httpx.Client, path: str, **headers: str) -> httpx.Response:
    """Envoy binds its inbound listener right after the ACK: retry a refused connection."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return client.get(path, headers=headers)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


TABLE = [
    # (caller, path, headers, status)
    (APP, "/public/a", {}, 200),
    (APP, "/private/a", {}, 200),  # ALLOW by principal
    (OTHER, "/private/a", {}, 403),  # not the allowed principal
    (OTHER, "/public/a", {}, 200),
    (APP, "/admin/a", {}, 403),  # DENY (root namespace) on the path
    (APP, "/private/a", {"x-block": "1"}, 403),  # DENY beats ALLOW
    (APP, "/elsewhere", {}, 403),  # no ALLOW rule matches
    (OTHER, "/public/secret", {}, 403),  # ServiceIntentions: an L7 deny for sa/other
    (APP, "/public/secret", {}, 200),
]
PLAINTEXT = [
    ("/public/a", 200),
    ("/private/a", 403),  # no principal without mTLS
    ("/admin/a", 403),
]


def test_envoy_acks_and_enforces_policy(mesh: Mesh) -> None:
    _synced(mesh.cp, "sessions-sidecar")
    for identity, path, headers, status in TABLE:
        with mesh.client(identity) as client:
            response = _get(client, path, **headers)
        assert response.status_code == status, (identity, path, headers, response.text)
        if status == 403:
            assert response.text == "RBAC: access denied"
    with mesh.client(None) as plain:
        if mesh.mode == "STRICT":
            with pytest.raises(httpx.TransportError):
                plain.get("/public/a")
            return
        for path, status in PLAINTEXT:
            assert _get(plain, path).status_code == status, path
