"""``meshctl agent`` keeps a cert dir fresh, and grpcio's own xDS client reaches ADS on the
secure address with a bootstrap from ``meshctl bootstrap --cert-dir`` (gRFC A65 ``tls``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from meshlib.security.pki import load_certificates
from tests.security.support import MESHCTL, create_token, meshctl, run_agent, secure_controlplane
from tests.support.backends import grpc_backends
from tests.support.meshconfig import service_entry, write_config
from tests.support.native_grpc import native_grpc_client

EVENT_TIMEOUT_S = 30.0


def test_grpcio_reaches_ads_over_the_secure_port_with_agent_certificates(tmp_path: Path) -> None:
    with grpc_backends(1, prefix="tls") as backends:
        config = write_config(
            tmp_path / "mesh.yaml", service_entry("echo", 50051, [backends[0].port])
        )
        with secure_controlplane(tmp_path, config=config) as cp:
            token_file = tmp_path / "token"
            token_file.write_text(create_token(cp, "client"))
            certs = tmp_path / "certs"
            assert run_agent(token_file, certs).returncode == 0
            bootstrap = tmp_path / "bootstrap.json"
            done = meshctl(
                "bootstrap", "--xds-address", cp.secure_xds_address, "--node-id", "grpcio-tls",
                "--cert-dir", str(certs), "-o", str(bootstrap),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            document = json.loads(bootstrap.read_text())
            files = {
                "certificate_file": str(certs.resolve() / "cert-chain.pem"),
                "private_key_file": str(certs.resolve() / "key.pem"),
                "ca_certificate_file": str(certs.resolve() / "root-cert.pem"),
                "refresh_interval": "600s",  # a tenth of 24h, at most 600s
            }
            (server,) = document["xds_servers"]
            assert server["server_uri"] == cp.secure_xds_address
            assert server["channel_creds"] == [{"type": "tls", "config": files}]
            assert document["certificate_providers"] == {
                "default": {"plugin_name": "file_watcher", "config": files}
            }
            with native_grpc_client(bootstrap) as client:
                assert client.calls("xds:///echo:50051", 3) == ["tls0"] * 3
                clients = httpx.get(f"{cp.admin_url}/v1/clients", timeout=10).json()
            assert "grpcio-tls" in json.dumps(clients)  # its only server is the secure one


def _events(process: subprocess.Popen[str], sink: queue.Queue[dict[str, str]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sink.put(json.loads(line))


def test_agent_rotates_short_lived_certificates(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path, "--cert-ttl", "3s") as cp:
        token_file = tmp_path / "token"
        token_file.write_text(create_token(cp, "rotating"))
        certs = tmp_path / "certs"
        agent = subprocess.Popen(
            [*MESHCTL, "agent", "--token-file", str(token_file), "--cert-dir", str(certs)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        events: queue.Queue[dict[str, str]] = queue.Queue()
        threading.Thread(target=_events, args=(agent, events), daemon=True).start()
        try:
            written = [events.get(timeout=EVENT_TIMEOUT_S) for _ in range(4)]
            on_disk = load_certificates((certs / "cert-chain.pem").read_bytes(), "chain")[0]
        finally:
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=15)
        assert agent.returncode == 0, stderr
    serials = [event["serial"] for event in written]
    assert len(set(serials)) == 4, serials
    assert {e["identity"] for e in written} == {"spiffe://example.org/ns/conference/sa/rotating"}
    assert format(on_disk.serial_number, "x") in serials[-2:]  # the last or the one after
    assert (certs / "key.pem").stat().st_mode & 0o777 == 0o600
    bootstrap = subprocess.run(
        [*MESHCTL, "bootstrap", "--xds-address", cp.secure_xds_address, "--node-id", "n",
         "--cert-dir", str(certs)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    refresh = json.loads(bootstrap.stdout)["certificate_providers"]["default"]["config"]
    assert refresh["refresh_interval"] == "1s"  # a tenth of 3s, at least 1s
    assert sys.executable
