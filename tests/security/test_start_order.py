"""Started in any order: ``Mesh(token=...)`` and ``meshctl agent`` wait (with backoff,
each wait logged) for a control plane that cannot be reached yet, and get their first
certificate once it starts; a refusal (a revoked token) still fails at once."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshlib import Mesh
from meshlib.errors import CertificateRequestError, CertificateServiceUnreachableError
from meshlib.security.join_token import read_claims
from tests.security.support import TRUST_DOMAIN, create_token, meshctl
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port, wait_for

WAITING = "control_plane_unreachable_waiting"
ENVIRONMENT = ("GRPC_XDS_BOOTSTRAP", "GRPC_XDS_BOOTSTRAP_CONFIG", "MESH_TOKEN", "MESH_TOKEN_FILE")


@contextmanager
def controlplane_on(data_dir: Path, port: int) -> Iterator[ControlPlaneProcess]:
    """The control plane with its CA in ``data_dir``, its secure xDS port ``port``
    (chosen beforehand: the token names it, and the client starts first)."""
    args = ["--secure-xds-address", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    args += ["--trust-domain", TRUST_DOMAIN, "--allow-empty-config"]
    with running_controlplane(None, extra_args=args) as cp:
        yield cp


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[int, str, str]:
    """(port, a good token, a revoked token), made by a control plane then stopped."""
    port = free_port()
    with controlplane_on(tmp_path / "cp", port) as cp:
        good, revoked = create_token(cp, "sessions"), create_token(cp, "app")
        done = meshctl("token", "revoke", revoked, "--admin-address", cp.admin_address)
        assert done.returncode == 0, done.stderr
    return port, good, revoked


def test_mesh_waits_for_a_control_plane_started_after_it(
    tmp_path: Path,
    tokens: tuple[int, str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    port, good, revoked = tokens
    caplog.set_level(logging.WARNING, logger="meshlib.security.first_certificate")
    outcome: list[object] = []

    def start_mesh() -> None:
        try:
            with Mesh(token=good, ready_timeout_s=60.0) as mesh:
                assert mesh.certificates is not None
                outcome.append(mesh.certificates.current().identity)
        except Exception as exc:
            outcome.append(exc)

    client = threading.Thread(target=start_mesh, daemon=True)
    client.start()
    try:
        wait_for(lambda: any(WAITING in r.getMessage() for r in caplog.records), timeout=30)
        with controlplane_on(tmp_path / "cp", port):
            client.join(timeout=60)
            assert not client.is_alive()
            assert [str(x) for x in outcome] == [
                f"spiffe://{TRUST_DOMAIN}/ns/conference/sa/sessions"
            ]
            waits = [r for r in caplog.records if WAITING in r.getMessage()]
            assert f"127.0.0.1:{port}" in waits[0].getMessage()
            caplog.clear()
            # a refusal is not waited for, however long the mesh would wait
            with pytest.raises(CertificateRequestError, match="revoked") as refused:
                Mesh(token=revoked, ready_timeout_s=60.0)
            assert not isinstance(refused.value, CertificateServiceUnreachableError)
            assert not [r for r in caplog.records if WAITING in r.getMessage()]
    finally:
        client.join(timeout=60)


def test_an_unreachable_control_plane_fails_after_the_ready_timeout(
    tokens: tuple[int, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    port, good, _ = tokens
    with pytest.raises(CertificateServiceUnreachableError, match=r"after waiting 1s") as error:
        Mesh(token=good, ready_timeout_s=1.0)
    assert f"127.0.0.1:{port}" in str(error.value)


def test_the_agent_waits_for_a_control_plane_started_after_it(
    tmp_path: Path, tokens: tuple[int, str, str]
) -> None:
    port, good, revoked = tokens
    (tmp_path / "good").write_text(good)
    (tmp_path / "revoked").write_text(revoked)
    folder = tmp_path / "certs"
    agent = subprocess.Popen(
        [sys.executable, "-m", "controlplane.meshctl", "agent", "--once",
         "--token-file", str(tmp_path / "good"), "--cert-dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        assert agent.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(agent.stderr or ()), daemon=True)
        reader.start()
        wait_for(lambda: any("waiting for the control plane" in x for x in lines), timeout=30)
        with controlplane_on(tmp_path / "cp", port):
            assert agent.wait(timeout=60) == 0, "".join(lines)
            assert (folder / "cert-chain.pem").exists()
            assert f"127.0.0.1:{port}" in lines[0]
            refused = meshctl(
                "agent", "--once", "--token-file", str(tmp_path / "revoked"),
                "--cert-dir", str(tmp_path / "other"),
            )  # fmt: skip
            assert refused.returncode == 1
            assert f"join token {read_claims(revoked).token_id} revoked" in refused.stderr
            assert "waiting for the control plane" not in refused.stderr
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait(timeout=10)
        for stream in (agent.stdout, agent.stderr):
            if stream is not None:
                stream.close()
