"""The CA and the revoked tokens live in the store: two replicas on one etcd sign under
one root (also when they start at the same moment) and refuse the same revoked tokens;
a SQLite restart keeps both; the store file is the owner's only; an explicit --ca-cert
under another root than the stored CA, or another --trust-domain, is refused by name;
an older data dir's root is taken over."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from controlplane.ca.authority import CertificateAuthority
from meshlib._protos import ca_v1_pb2 as ca_pb
from meshlib.security import build_csr, fingerprint, generate_key, read_claims
from meshlib.security.pki import load_certificates
from tests.security.support import (
    TRUST_DOMAIN,
    ca_root,
    create_token,
    meshctl,
    run_agent,
    secure_controlplane,
    sign_call,
    stored_ca,
)
from tests.security.test_ca_material import _serve
from tests.support.etcd import EtcdCluster, etcd_cluster, require_etcd
from tests.support.processes import ControlPlaneProcess

FOLLOW_S = 10.0  # a bounded wait: the other replica follows within a second


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    require_etcd()
    with etcd_cluster(tmp_path) as cluster:
        yield cluster


def _sign_status(cp: ControlPlaneProcess, token: str) -> grpc.StatusCode:
    """The status of one Sign call with ``token`` at ``cp`` (OK when a certificate came)."""
    root = ca_root(cp, read_claims(token).ca_fingerprint)
    request = ca_pb.SignRequest(csr_pem=build_csr(generate_key()).decode())
    try:
        sign_call(cp, root, request, [("authorization", f"Bearer {token}")])
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _revoke(cp: ControlPlaneProcess, token: str) -> None:
    done = meshctl("token", "revoke", token, "--admin-address", cp.admin_address)
    assert done.returncode == 0, done.stderr


def test_two_replicas_on_etcd_share_the_root_and_the_revocations(
    tmp_path: Path, etcd: EtcdCluster
) -> None:
    store = ("--store", etcd.url)
    with (
        secure_controlplane(tmp_path, *store, name="r0") as one,
        secure_controlplane(tmp_path, *store, name="r1") as two,
    ):
        token = create_token(one, "app")
        (tmp_path / "token").write_text(token)
        # Issued by replica one, honoured by replica two: same root, same token key.
        done = run_agent(tmp_path / "token", tmp_path / "certs", "--xds-address",
                         two.secure_xds_address)  # fmt: skip
        assert done.returncode == 0, done.stderr
        chain = load_certificates((tmp_path / "certs" / "root-cert.pem").read_bytes(), "root")
        assert fingerprint(chain[-1]) == read_claims(token).ca_fingerprint
        assert read_claims(create_token(two, "web")).ca_fingerprint == fingerprint(chain[-1])

        revoked = create_token(two, "app")
        assert _sign_status(one, revoked) == grpc.StatusCode.OK
        _revoke(two, revoked)
        assert _sign_status(two, revoked) == grpc.StatusCode.UNAUTHENTICATED
        deadline = time.monotonic() + FOLLOW_S
        while _sign_status(one, revoked) != grpc.StatusCode.UNAUTHENTICATED:
            assert time.monotonic() < deadline, "replica one still honours a revoked token"
            time.sleep(0.2)
        assert _sign_status(one, token) == grpc.StatusCode.OK
    # A replica started later reads both from etcd.
    with secure_controlplane(tmp_path, *store, name="r2") as three:
        assert _sign_status(three, token) == grpc.StatusCode.OK
        assert _sign_status(three, revoked) == grpc.StatusCode.UNAUTHENTICATED
    assert not (tmp_path / "r0" / "ca").exists()  # nothing of the CA on a replica's disk


def test_replicas_started_together_on_etcd_make_one_root(tmp_path: Path, etcd: EtcdCluster) -> None:
    starts: list[AbstractContextManager[ControlPlaneProcess]] = [
        secure_controlplane(tmp_path, "--store", etcd.url, name=f"r{i}") for i in range(2)
    ]
    with ThreadPoolExecutor(2) as pool:  # both race to create the CA
        futures = [pool.submit(start.__enter__) for start in starts]
        errors = [future.exception() for future in futures]
    try:
        assert errors == [None, None], errors
        replicas = [future.result() for future in futures]
        roots = {read_claims(create_token(cp, "app")).ca_fingerprint for cp in replicas}
        assert len(roots) == 1
    finally:
        for start, future in zip(starts, futures, strict=True):
            if future.exception() is None:
                start.__exit__(None, None, None)


def test_a_restart_on_sqlite_keeps_the_root_and_the_revocations(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        kept, revoked = create_token(cp, "app"), create_token(cp, "app")
        _revoke(cp, revoked)
    store_file = tmp_path / "cp" / "store.db"
    assert stat.S_IMODE(os.stat(store_file).st_mode) == 0o600  # it holds the CA key
    with secure_controlplane(tmp_path) as cp:
        assert _sign_status(cp, kept) == grpc.StatusCode.OK
        assert _sign_status(cp, revoked) == grpc.StatusCode.UNAUTHENTICATED


def test_explicit_ca_files_are_checked_against_the_stored_ca(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        token = create_token(cp, "app")
    key_pem, chain_pem = stored_ca(tmp_path / "cp")
    (tmp_path / "ca.pem").write_bytes(chain_pem)
    (tmp_path / "ca-key.pem").write_bytes(key_pem)
    same = ("--ca-cert", str(tmp_path / "ca.pem"), "--ca-key", str(tmp_path / "ca-key.pem"))
    with secure_controlplane(tmp_path, *same) as cp:  # the stored CA's own files: fine
        assert _sign_status(cp, token) == grpc.StatusCode.OK

    other = CertificateAuthority.new_root(TRUST_DOMAIN)
    (tmp_path / "other.pem").write_bytes(other.chain_pem)
    (tmp_path / "other-key.pem").write_bytes(other.key_pem)
    data_dir = str(tmp_path / "cp")
    done = _serve("--data-dir", data_dir, "--secure-xds-address", "127.0.0.1:0",
                  "--trust-domain", TRUST_DOMAIN, "--ca-cert", str(tmp_path / "other.pem"),
                  "--ca-key", str(tmp_path / "other-key.pem"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"--ca-cert {tmp_path / 'other.pem'}: its root (sha256 {other.fingerprint})" in (
        done.stderr
    )
    assert f"is not the root of the CA in store sqlite:///{tmp_path / 'cp' / 'store.db'}" in (
        done.stderr
    )

    done = _serve("--data-dir", data_dir, "--secure-xds-address", "127.0.0.1:0",
                  "--trust-domain", "other.org")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "its CA serves trust domain 'example.org', not --trust-domain 'other.org'" in (
        done.stderr
    )
    assert stored_ca(tmp_path / "cp") == (key_pem, chain_pem)  # nothing replaced


def test_an_older_data_dirs_root_is_taken_into_the_store(tmp_path: Path) -> None:
    older = CertificateAuthority.new_root(TRUST_DOMAIN)
    folder = tmp_path / "cp" / "ca"
    folder.mkdir(parents=True)
    (folder / "root-cert.pem").write_bytes(older.chain_pem)
    (folder / "root-key.pem").write_bytes(older.key_pem)
    with secure_controlplane(tmp_path) as cp:
        assert read_claims(create_token(cp, "app")).ca_fingerprint == older.fingerprint
    key = serialization.load_pem_private_key(stored_ca(tmp_path / "cp")[0], password=None)
    assert key.public_key() == older.key.public_key()
