"""The workload's certificate keeper: obtained from a token before any call, renewed at
half the lifetime with subscribers told, read from meshctl agent's folder, clear errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography import x509

from meshlib import Mesh
from meshlib.errors import CertificateRequestError, JoinTokenError, SecurityError
from meshlib.mesh_identity import TOKEN_ENV, TOKEN_FILE_ENV
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.pki import WorkloadCertificate
from tests.security.support import TRUST_DOMAIN, create_token, run_agent, secure_controlplane
from tests.support.waiting import wait_for


def test_token_keeper_obtains_then_renews_at_half_life(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path, "--cert-ttl", "3s") as cp:
        keeper = CertificateKeeper.from_token(create_token(cp, "sessions"))
        try:
            first = keeper.current()
            assert str(first.identity) == f"spiffe://{TRUST_DOMAIN}/ns/conference/sa/sessions"
            seen: list[WorkloadCertificate] = []
            changed = threading.Event()

            def on_change(new: WorkloadCertificate) -> None:
                seen.append(new)
                if len(seen) >= 3:
                    changed.set()

            keeper.subscribe(on_change)
            assert changed.wait(30), "fewer than 3 renewals"
            serials = {first.serial, *(c.serial for c in seen)}
            assert len(serials) == len(seen) + 1  # every renewal is a new certificate
            assert keeper.current() is seen[-1]
            assert all(c.identity == first.identity for c in seen)
            assert b"PRIVATE KEY" in keeper.current().key_pem
            # X.509-SVID: one URI SAN, plus the one DNS SAN standing for it (grpcio)
            san = (
                keeper.current()
                .leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                .value
            )
            assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(first.identity)]
            assert first.identity is not None
            assert san.get_values_for_type(x509.DNSName) == [first.identity.dns_name]
        finally:
            keeper.close()


def test_unsubscribe_and_a_failing_subscriber(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        keeper = CertificateKeeper.from_token(create_token(cp, "sessions"))
    calls: list[int] = []

    def broken(_new: WorkloadCertificate) -> None:
        raise RuntimeError("subscriber bug")

    keeper.subscribe(broken)
    stop = keeper.subscribe(lambda new: calls.append(new.serial))
    keeper.replace(keeper.current())
    stop()
    keeper.replace(keeper.current())
    assert calls == [keeper.current().serial]
    keeper.close()
    keeper.close()


def test_bad_tokens_and_unreachable_control_plane_are_clear(tmp_path: Path) -> None:
    with pytest.raises(JoinTokenError, match=r"Mesh\(token=\.\.\.\): not a join token"):
        Mesh(token="not-a-jwt")
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "sessions")
        address = cp.secure_xds_address
    unreachable = f"control plane {address} could not be reached to learn its CA"
    with pytest.raises(CertificateRequestError, match=unreachable):
        CertificateKeeper.from_token(token, wait_s=0)  # waiting: tests/security/test_start_order


def test_mesh_takes_token_file_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with secure_controlplane(tmp_path) as cp:
        token_file = tmp_path / "token"
        token_file.write_text(create_token(cp, "app") + "\n")
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
        monkeypatch.setenv("GRPC_XDS_BOOTSTRAP_CONFIG", _bootstrap(cp.xds_address))
        with Mesh() as mesh:
            assert mesh.certificates is not None
            assert mesh.certificates.current().identity is not None
            assert mesh.certificates.current().identity.service_account == "app"  # type: ignore[union-attr]
        monkeypatch.setenv(TOKEN_FILE_ENV, str(tmp_path / "missing"))
        with pytest.raises(JoinTokenError, match=r"token file .*missing: cannot read"):
            Mesh()


def test_files_keeper_follows_the_agent_and_skips_half_written_sets(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    with secure_controlplane(tmp_path) as cp:
        token_file = tmp_path / "token"
        token_file.write_text(create_token(cp, "sessions"))
        assert run_agent(token_file, certs).returncode == 0
        paths = (certs / "cert-chain.pem", certs / "key.pem", certs / "root-cert.pem")
        keeper = CertificateKeeper.from_files(*paths, refresh_s=0.05)
        try:
            first = keeper.current()
            old_chain = paths[0].read_bytes()
            assert run_agent(token_file, certs).returncode == 0
            wait_for(lambda: keeper.current().serial != first.serial, timeout=10)
            second = keeper.current()
            paths[0].write_bytes(old_chain)  # a new key with an old chain: not used
            assert run_agent(token_file, tmp_path / "other").returncode == 0
            paths[1].write_bytes((tmp_path / "other" / "key.pem").read_bytes())
            threading.Event().wait(0.3)
            assert keeper.current() is second
        finally:
            keeper.close()
    with pytest.raises(SecurityError, match=r"certificate file .*nothing\.pem"):
        CertificateKeeper.from_files(tmp_path / "nothing.pem", *paths[1:], refresh_s=1)


def _bootstrap(xds_address: str) -> str:
    server = {"server_uri": xds_address, "channel_creds": [{"type": "insecure"}]}
    return json.dumps({"xds_servers": [server], "node": {"id": "keeper-test"}})
