"""Certificates from the control plane's CA: X.509-SVID properties, the secure port's
serving chain, and identities that come from the token, never from the CSR."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from meshlib._protos import ca_v1_pb2 as ca_pb
from meshlib.security import (
    SpiffeId,
    build_csr,
    generate_key,
    obtain_certificate,
    read_claims,
    renew_certificate,
)
from meshlib.security.pki import key_pem, load_certificates, spiffe_id_of
from meshlib.security.trust import presented_chain
from tests.security.support import (
    TRUST_DOMAIN,
    ca_root,
    create_token,
    run_agent,
    secure_controlplane,
    sign_call,
)
from tests.support.waiting import wait_for


def _openssl(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["openssl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        check=False,
    )
    return done.stdout + done.stderr


def test_agent_once_writes_an_svid_that_openssl_shows(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        token_file = tmp_path / "token"
        token_file.write_text(create_token(cp, "sessions") + "\n")
        done = run_agent(token_file, tmp_path / "certs")
        assert done.returncode == 0, done.stderr
    certs = tmp_path / "certs"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in certs.iterdir()}
    assert modes == {
        "cert-chain.pem": 0o644,
        "key.pem": 0o600,
        "root-cert.pem": 0o644,
        "default.sds.json": 0o644,  # what an Envoy sidecar reads the files through
        "rootca.sds.json": 0o644,
    }
    text = _openssl("x509", "-in", str(certs / "cert-chain.pem"), "-noout", "-text")
    expected = f"URI:spiffe://{TRUST_DOMAIN}/ns/conference/sa/sessions"
    assert re.search(r"X509v3 Subject Alternative Name: critical\s+" + re.escape(expected), text)
    assert text.count("URI:") == 1
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:FALSE", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Digital Signature\n", text)
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    verified = _openssl(
        "verify", "-CAfile", str(certs / "root-cert.pem"), str(certs / "cert-chain.pem")
    )
    assert ": OK" in verified
    leaf = load_certificates((certs / "cert-chain.pem").read_bytes(), "chain")[0]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() == 24 * 3600  # --cert-ttl default
    key = (certs / "key.pem").read_bytes()
    assert _openssl("pkey", "-in", str(certs / "key.pem"), "-pubout") == _openssl(
        "x509", "-in", str(certs / "cert-chain.pem"), "-noout", "-pubkey"
    ), key


def test_secure_port_serves_its_chain_and_identity(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        claims = read_claims(create_token(cp, "sessions"))
        assert claims.address == cp.secure_xds_address
        root = ca_root(cp, claims.ca_fingerprint)
        (tmp_path / "root.pem").write_bytes(root)
        shown = _openssl(
            "s_client", "-connect", cp.secure_xds_address, "-CAfile", str(tmp_path / "root.pem"),
            "-verify_return_error", "-showcerts", "-alpn", "h2",
        )  # fmt: skip
    assert "Verify return code: 0 (ok)" in shown
    assert "i:O = example.org, CN = meshlib root CA" in shown
    served = x509.load_pem_x509_certificates(
        "".join(
            re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", shown, re.S)
        ).encode()
    )
    assert (
        str(spiffe_id_of(served[0])) == "spiffe://example.org/ns/mesh-system/sa/mesh-controlplane"
    )
    san = served[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_a_token_for_one_account_never_gets_another(tmp_path: Path) -> None:
    """Identity theft: whatever the CSR asks for, the certificate names the token's identity."""
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "app")
        root = ca_root(cp, read_claims(token).ca_fingerprint)
        victim = SpiffeId(TRUST_DOMAIN, "conference", "sessions")
        for asked in (victim, SpiffeId("other.org", "kube-system", "admin"), None):
            key = generate_key()
            request = ca_pb.SignRequest(csr_pem=build_csr(key, asked).decode(), ttl_seconds=600)
            answer = sign_call(cp, root, request, [("authorization", f"Bearer {token}")])
            leaf = x509.load_pem_x509_certificate(answer.cert_chain_pem[0].encode())
            assert str(spiffe_id_of(leaf)) == "spiffe://example.org/ns/conference/sa/app"
            assert answer.spiffe_id == "spiffe://example.org/ns/conference/sa/app"
            assert leaf.public_key() == key.public_key()
            lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
            assert lifetime.total_seconds() == 600


def test_requested_lifetime_is_clamped_to_the_maximum(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path, "--cert-ttl", "1h", "--max-cert-ttl", "2h") as cp:
        token = create_token(cp, "app")
        root = ca_root(cp, read_claims(token).ca_fingerprint)
        key = generate_key()
        request = ca_pb.SignRequest(csr_pem=build_csr(key).decode(), ttl_seconds=30 * 86400)
        answer = sign_call(cp, root, request, [("authorization", f"Bearer {token}")])
        default = sign_call(
            cp, root, ca_pb.SignRequest(csr_pem=build_csr(key).decode()),
            [("authorization", f"Bearer {token}")],
        )  # fmt: skip
    for response, seconds in ((answer, 7200), (default, 3600)):
        leaf = x509.load_pem_x509_certificate(response.cert_chain_pem[0].encode())
        assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == seconds


def test_the_certificate_service_is_not_on_the_plaintext_port(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "app")
        request = ca_pb.SignRequest(csr_pem=build_csr(generate_key()).decode())
        with pytest.raises(grpc.RpcError) as refused:
            sign_call(cp, b"", request, [("authorization", f"Bearer {token}")], secure=False)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "secure xDS address" in str(refused.value.details())


def test_renewal_with_the_current_certificate_keeps_its_identity(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        first = obtain_certificate(create_token(cp, "app"))
        renewed = renew_certificate(cp.secure_xds_address, first, ttl_s=120)
    assert renewed.identity == first.identity
    assert renewed.serial != first.serial
    assert renewed.key_pem != first.key_pem
    assert key_pem  # the key never left the process: only the CSR went out


def test_the_serving_certificate_is_renewed_at_half_its_lifetime(tmp_path: Path) -> None:
    """New handshakes get a new serving certificate once half of its lifetime is gone."""

    def serving_serial(address: str) -> int:
        host, _, port = address.rpartition(":")
        return x509.load_der_x509_certificate(presented_chain(host, int(port))[0]).serial_number

    with secure_controlplane(tmp_path, "--cert-ttl", "2s", "--max-cert-ttl", "4s") as cp:
        first = serving_serial(cp.secure_xds_address)
        wait_for(lambda: serving_serial(cp.secure_xds_address) != first, timeout=20, interval=0.2)
        token = create_token(cp, "app")  # the port still answers, with a valid chain
        assert obtain_certificate(token).identity == SpiffeId(TRUST_DOMAIN, "conference", "app")
