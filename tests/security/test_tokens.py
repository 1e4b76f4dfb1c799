"""Join tokens that must get nothing (expired, revoked, forged, tampered, another CA's),
and bad input (CSRs, tokens, token files) refused with an error naming what and where."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshlib._protos import ca_v1_pb2 as ca_pb
from meshlib.security import build_csr, generate_key, read_claims
from tests.security.support import (
    ca_root,
    create_token,
    meshctl,
    run_agent,
    secure_controlplane,
    sign_call,
    stored_ca,
)
from tests.support.processes import ControlPlaneProcess


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _agent_refused(tmp_path: Path, token: str, *extra: str) -> str:
    """Run the agent with ``token``: it must exit 1, write nothing, and say why."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    cert_dir = tmp_path / "certs-refused"
    done = run_agent(token_file, cert_dir, *extra)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert not cert_dir.exists() or not any(cert_dir.iterdir())
    assert done.stdout == ""
    return done.stderr


def test_expired_revoked_forged_and_tampered_tokens_get_nothing(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        good = create_token(cp, "app")
        claims = _claims(good)
        ca_key = serialization.load_pem_private_key(stored_ca(tmp_path / "cp")[0], password=None)
        now = int(time.time())
        expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, ca_key, "ES256")
        assert "UNAUTHENTICATED: join token expired" in _agent_refused(tmp_path, expired)

        forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256")
        assert "not signed by this control plane's CA" in _agent_refused(tmp_path, forged)

        header, _, signature = good.split(".")
        other = {**claims, "sub": "spiffe://example.org/ns/conference/sa/sessions"}
        body = base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode()
        tampered = f"{header}.{body}.{signature}"
        assert "not signed by this control plane's CA" in _agent_refused(tmp_path, tampered)

        revoked = create_token(cp, "app")
        done = meshctl("token", "revoke", revoked, "--admin-address", cp.admin_address)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"join token {read_claims(revoked).token_id} revoked\n"
        typo = meshctl("token", "revoke", "deadbeef", "--admin-address", cp.admin_address)
        assert typo.returncode == 2  # a mistyped id would revoke nothing, silently
        assert "ID 'deadbeef': not a token id (32 hex digits" in typo.stderr
        assert f"join token {read_claims(revoked).token_id} revoked" in _agent_refused(
            tmp_path, revoked
        )
        # The good token still works after all that.
        (tmp_path / "token").write_text(good)
        assert run_agent(tmp_path / "token", tmp_path / "certs").returncode == 0


def test_another_control_planes_token_gets_nothing(tmp_path: Path) -> None:
    with (
        secure_controlplane(tmp_path, name="one") as one,
        secure_controlplane(tmp_path, name="two") as two,
    ):
        foreign = create_token(two, "app")
        # The agent pins the CA the token names: control plane one is not trusted.
        stderr = _agent_refused(tmp_path, foreign, "--xds-address", one.secure_xds_address)
        assert "does not present the CA the token names" in stderr
        # Presented anyway over a channel that trusts one: refused.
        root = ca_root(one, read_claims(create_token(one, "app")).ca_fingerprint)
        request = ca_pb.SignRequest(csr_pem=build_csr(generate_key()).decode())
        with pytest.raises(grpc.RpcError) as refused:
            sign_call(one, root, request, [("authorization", f"Bearer {foreign}")])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _rsa_csr(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _bad_signature_csr() -> str:
    pem = build_csr(generate_key()).decode()
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _csr_with(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


BAD_CSRS = {
    "empty": ("", "csr_pem: is empty"),
    "garbage": ("hello", "csr_pem: not a PEM certificate request"),
    "certificate not csr": (
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "csr_pem: not a PEM certificate request",
    ),
    "bad signature": (_bad_signature_csr(), "csr_pem: the signature does not match its key"),
    "rsa 1024": (_rsa_csr(1024), "csr_pem: RSA key of 1024 bits is too weak (at least 2048)"),
    "p-521": (
        _csr_with(ec.generate_private_key(ec.SECP521R1())),
        "csr_pem: EC curve secp521r1 is not supported",
    ),
    "ed25519": (_csr_with(ed25519.Ed25519PrivateKey.generate()), "Ed25519PublicKey keys are not"),
}


def _sign_status(
    cp: ControlPlaneProcess, root: bytes, request: ca_pb.SignRequest | bytes, metadata: list
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        sign_call(cp, root, request, metadata)
    return refused.value.code(), str(refused.value.details())


def test_bad_csrs_and_authorization_headers_are_named(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "app")
        root = ca_root(cp, read_claims(token).ca_fingerprint)
        bearer = [("authorization", f"Bearer {token}")]
        for name, (csr, message) in BAD_CSRS.items():
            code, details = _sign_status(cp, root, ca_pb.SignRequest(csr_pem=csr), bearer)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, name
            assert message in details, (name, details)
        code, details = _sign_status(cp, root, b"\xff\xff\xff", bearer)
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "SignRequest")
        good = ca_pb.SignRequest(csr_pem=build_csr(generate_key()).decode())
        for metadata, message in (
            ([], "no join token (authorization: Bearer TOKEN) and no certificate proof"),
            ([("authorization", "Basic abc")], "expected 'Bearer JOIN_TOKEN'"),
            ([("authorization", "Bearer ")], "expected 'Bearer JOIN_TOKEN'"),
            ([("authorization", "Bearer not-a-jwt")], "join token invalid"),
            ([("mesh-client-cert-bin", b"junk")], "mesh-client-cert-bin needs"),
        ):
            code, details = _sign_status(cp, root, good, metadata)
            assert code == grpc.StatusCode.UNAUTHENTICATED, metadata
            assert message in details, (metadata, details)


def test_bad_token_files_are_named(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    missing = tmp_path / "missing"
    cases = {
        "empty": ("\n \n", "is empty"),
        "two": ("a.b.c d.e.f", "holds more than one token"),
        "json": (
            '{"token": "a.b.c", "id": "x"}',
            'is JSON (meshctl token create -o json?): write its "token" alone',
        ),
        "not a jwt": ("hello", "not a join token (a JWT)"),
        "no claims": (jwt.encode({"x": 1}, "k" * 32, "HS256"), "claims missing: sub, ca, addr"),
        "bad sub": (
            jwt.encode(
                {"sub": "spiffe://x/y", "ca": "0" * 64, "addr": "a:1", "exp": 1, "jti": "j"},
                "k" * 32,
                "HS256",
            ),
            "claim sub: identity 'spiffe://x/y': must be spiffe://TRUST_DOMAIN/ns/",
        ),
        "bad ca": (
            jwt.encode(
                {"sub": "spiffe://td/ns/a/sa/b", "ca": "xyz", "addr": "a:1", "exp": 1, "jti": "j"},
                "k" * 32,
                "HS256",
            ),
            "claim ca: not a SHA-256 hex fingerprint",
        ),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"token-{name.replace(' ', '-')}"
        path.write_text(text)
        done = run_agent(path, cert_dir)
        assert done.returncode == 2, name
        assert f"token file {path}" in done.stderr and message in done.stderr, (name, done.stderr)
    done = run_agent(missing, cert_dir)
    assert done.returncode == 2
    assert f"token file {missing}: cannot read: No such file or directory" in done.stderr
    assert not cert_dir.exists()


def test_token_create_refuses_bad_arguments(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        for args, message in (
            (["--service-account", "Bad_Name"], "service account 'Bad_Name': must be a DNS name"),
            (["--service-account", "a", "--namespace=x."], "namespace 'x.'"),
            (["--service-account", "a", "--ttl", "1d"], "ttl: invalid duration '1d'"),
            (["--service-account", "a", "--ttl", "9000h"], "ttl: must be between 1s and"),
        ):
            done = meshctl("token", "create", *args, "--admin-address", cp.admin_address)
            assert done.returncode == 1, args
            assert message in done.stderr, (args, done.stderr)
            assert done.stdout == ""


def test_creating_tokens_needs_the_admin_scope(tmp_path: Path) -> None:
    tokens = tmp_path / "admin-tokens"
    tokens.write_text("writer-secret write,read,register\nboss-secret admin\n")
    with secure_controlplane(tmp_path, "--admin-token-file", str(tokens)) as cp:
        base = ["token", "create", "--service-account", "app", "--admin-address", cp.admin_address]
        for token, code, shown in (
            ([], 1, "401"),
            (["--token", "writer-secret"], 1, "403"),
            (["--token", "boss-secret"], 0, ""),
        ):
            done = meshctl(*base, *token)
            assert done.returncode == code, (token, done.stderr)
            assert shown in done.stderr
        issued = read_claims(done.stdout.strip())
        revoke = meshctl(
            "token", "revoke", issued.token_id, "--admin-address", cp.admin_address,
            "--token", "writer-secret",
        )  # fmt: skip
        assert revoke.returncode == 1 and "403" in revoke.stderr
