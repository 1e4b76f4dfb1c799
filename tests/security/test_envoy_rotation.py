"""An Envoy sidecar's certificates rotate under load: ``meshctl agent`` keeps its cert dir
with 6-second certificates from the control plane's CA, Envoy reads them through
file-based SDS (the control plane's TLS contexts name the secrets ``default`` and
``ROOTCA`` of ``mesh.cert_dir``; the agent writes their SDS files), and a steady stream
of calls through its outbound listener, mTLS (one request per upstream connection:
every call a new handshake) to its own STRICT inbound listener enforcing an
AuthorizationPolicy, has zero failed calls over several rotations while Envoy's
``/certs`` shows the new serials. A denied path stays 403; a plaintext caller of the
inbound port gets no answer."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.security.support import MESHCTL, create_token, secure_controlplane
from tests.support.backends import http_backends
from tests.support.envoy import EnvoySidecar, running_envoy_sidecar
from tests.support.security_yaml import peer_authentication, workload_with_account
from tests.support.waiting import free_port, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.integration]

CERT_TTL = "6s"
ROTATIONS = 3
RUN_LIMIT_S = 60.0  # a bound, not a timing: three rotations take about 9 s


def mesh_yaml(inbound_port: int, app_port: int) -> str:
    workload = workload_with_account(
        "sessions", "sessions-sidecar", number=8080, protocol="HTTP", port=inbound_port
    )
    strict = peer_authentication("STRICT")
    return f"{workload}---\n{ONE_REQUEST_PER_CONNECTION}{strict}---\n{ALLOW_OK}"


ONE_REQUEST_PER_CONNECTION = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sessions, namespace: conference}
spec:
  host: sessions
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
---
"""
ALLOW_OK = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sessions, namespace: conference}
spec:
  selector: {matchLabels: {app: sessions}}
  rules:
  - from: [{source: {principals: ["example.org/ns/conference/sa/sessions"]}}]
    to: [{operation: {paths: ["/ok/*"]}}]
"""


@contextmanager
def running_agent(token_file: Path, cert_dir: Path) -> Iterator[list[str]]:
    """``meshctl agent`` keeping ``cert_dir``; yields the serials it wrote, as it writes."""
    process = subprocess.Popen(
        [*MESHCTL, "agent", "--token-file", str(token_file), "--cert-dir", str(cert_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    serials: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            serials.append(json.loads(line)["serial"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: bool(serials), timeout=30, what="the agent's first certificate")
        yield serials
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()


def served_serials(envoy: EnvoySidecar) -> set[str]:
    """The serials of the workload certificates Envoy holds now (its admin ``/certs``)."""
    certs = httpx.get(envoy.admin_url + "/certs", timeout=5).json().get("certificates", [])
    return {
        cert["serial_number"].lower().lstrip("0")
        for entry in certs
        for cert in entry.get("cert_chain", [])
    }


def test_envoy_rotates_its_certificates_under_load_with_zero_failed_calls(
    tmp_path: Path,
) -> None:
    inbound = free_port()
    certs = tmp_path / "sidecar-certs"
    with http_backends(1, prefix="sessions-") as backends:
        config = tmp_path / "mesh.yaml"
        config.write_text(mesh_yaml(inbound, backends[0].port))
        extra = ("--cert-ttl", CERT_TTL)
        with secure_controlplane(tmp_path, *extra, config=config) as cp:
            token = tmp_path / "sessions.token"
            token.write_text(create_token(cp, "sessions"))
            metadata = {
                "mesh.inbound_port": inbound,
                "mesh.app_port": backends[0].port,
                "mesh.cert_dir": str(certs),
                "NAMESPACE": "conference",
            }
            with (
                running_agent(token, certs) as written,
                running_envoy_sidecar(
                    tmp_path / "envoy",
                    cp.xds_address,
                    "sessions-sidecar",
                    labels={"app": "sessions"},
                    metadata=metadata,
                ) as envoy,
                httpx.Client(
                    base_url=f"http://127.0.0.1:{envoy.outbound_port}",
                    headers={"host": "sessions:8080"},
                    timeout=5,
                ) as client,
            ):
                wait_for(
                    lambda: client.get("/ok/first").status_code == 200,
                    timeout=15,
                    what="the first call through the sidecar",
                )
                statuses: list[int] = []
                seen: set[str] = set()
                first = len(written)
                deadline = time.monotonic() + RUN_LIMIT_S
                while len(written) < first + ROTATIONS or not served_serials(envoy) & {written[-1]}:
                    assert time.monotonic() < deadline, (written, seen)
                    statuses.append(client.get("/ok/call").status_code)
                    seen |= served_serials(envoy)
                assert statuses.count(200) == len(statuses), statuses
                assert len(statuses) > 10 * ROTATIONS
                assert len(seen & set(written)) >= ROTATIONS  # Envoy served each new one
                assert client.get("/denied").status_code == 403
                with pytest.raises(httpx.HTTPError):  # STRICT: no plaintext answer
                    httpx.get(f"http://127.0.0.1:{inbound}/ok/plain", timeout=5)
