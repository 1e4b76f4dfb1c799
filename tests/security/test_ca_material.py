"""The CA's material: a root kept in --data-dir across restarts, an intermediate from
--ca-cert/--ca-key served with its chain, and unusable files refused by name."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshlib.security import fingerprint, read_claims
from meshlib.security.pki import load_certificates
from tests.security.support import create_token, run_agent, secure_controlplane


def _ca(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.now(timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def test_intermediate_ca_serves_leaves_with_its_chain(tmp_path: Path) -> None:
    root_key, mid_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _ca("corp root", root_key)
    middle = _ca("mesh intermediate", mid_key, (root.subject, root_key))
    (tmp_path / "ca.pem").write_bytes(_pem(middle, root))
    (tmp_path / "ca-key.pem").write_bytes(
        mid_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    ca_args = ("--ca-cert", str(tmp_path / "ca.pem"), "--ca-key", str(tmp_path / "ca-key.pem"))
    with secure_controlplane(tmp_path, *ca_args) as cp:
        token = create_token(cp, "app")
        (tmp_path / "token").write_text(token)
        assert run_agent(tmp_path / "token", tmp_path / "certs").returncode == 0
    assert read_claims(token).ca_fingerprint == fingerprint(root)
    chain = load_certificates((tmp_path / "certs" / "cert-chain.pem").read_bytes(), "chain")
    assert [c.issuer for c in chain] == [middle.subject, root.subject]
    assert (tmp_path / "certs" / "root-cert.pem").read_bytes() == _pem(root)


def test_the_root_in_the_data_dir_outlives_a_restart(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "app")
    with secure_controlplane(tmp_path) as cp:
        (tmp_path / "token").write_text(token)
        done = run_agent(tmp_path / "token", tmp_path / "certs", "--xds-address",
                         cp.secure_xds_address)  # fmt: skip
        assert done.returncode == 0, done.stderr


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "controlplane.cli", "serve", "--xds-address", "127.0.0.1:0",
               "--admin-address", "127.0.0.1:0", "--allow-empty-config", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_unusable_ca_material_is_refused_by_name(tmp_path: Path) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("root", root_key)
    (tmp_path / "root.pem").write_bytes(_pem(root))
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other-key.pem").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "junk.pem").write_text("junk")
    for args, message in (
        (["--ca-cert", str(tmp_path / "root.pem")], "--ca-cert and --ca-key go together"),
        (
            ["--ca-cert", str(tmp_path / "root.pem"), "--ca-key", str(tmp_path / "other-key.pem")],
            "the first certificate does not belong to --ca-key",
        ),
        (
            ["--ca-cert", str(tmp_path / "junk.pem"), "--ca-key", str(tmp_path / "other-key.pem")],
            f"--ca-cert {tmp_path / 'junk.pem'}: not PEM certificates",
        ),
        (
            ["--ca-cert", str(tmp_path / "root.pem"), "--ca-key", str(tmp_path / "junk.pem")],
            f"--ca-key {tmp_path / 'junk.pem'}: not an unencrypted PEM private key",
        ),
        (["--trust-domain", "Bad Domain"], "--trust-domain 'Bad Domain': must be lowercase"),
        (["--cert-ttl", "2h", "--max-cert-ttl", "1h"], "--cert-ttl 7200s is longer than"),
        (["--cert-ttl", "1d"], "invalid duration '1d'"),
        (["--secure-xds-address", "nowhere"], "--secure-xds-address: expected HOST:PORT"),
    ):
        done = _serve(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == ""
