"""A control plane with its CA on loopback, join tokens, and the agent, for security tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc

from meshlib._protos import ca_v1_pb2 as ca_pb
from meshlib.security.trust import pinned_root
from tests.support.meshctl_run import run_meshctl
from tests.support.processes import ControlPlaneProcess, running_controlplane

TRUST_DOMAIN = "example.org"
SIGN = "/meshlib.ca.v1.CertificateService/Sign"
MESHCTL = [sys.executable, "-m", "controlplane.meshctl"]


@contextmanager
def secure_controlplane(
    tmp_path: Path, *extra: str, config: Path | None = None, name: str = "cp"
) -> Iterator[ControlPlaneProcess]:
    """``mesh-controlplane serve`` with a data dir (its CA) and an OS-picked secure port
    (``config`` None: no config files, the store's only)."""
    args = ["--secure-xds-address", "127.0.0.1:0", "--data-dir", str(tmp_path / name)]
    args += ["--trust-domain", TRUST_DOMAIN, "--allow-empty-config", *extra]
    with running_controlplane(config, extra_args=args) as cp:
        assert cp.secure_xds_address
        yield cp


def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
    """A short meshctl command, run in this process (tests/support/meshctl_run.py)."""
    return run_meshctl(*args)


def create_token(cp: ControlPlaneProcess, sa: str, ns: str = "conference", ttl: str = "1h") -> str:
    done = meshctl(
        "token", "create", "--service-account", sa, "--namespace", ns, "--ttl", ttl,
        "--admin-address", cp.admin_address,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token and "\n" not in token
    return token


def ca_root(cp: ControlPlaneProcess, token_fingerprint: str) -> bytes:
    return pinned_root(cp.secure_xds_address, token_fingerprint)


def sign_call(
    cp: ControlPlaneProcess,
    root_pem: bytes,
    request: ca_pb.SignRequest | bytes,
    metadata: Sequence[tuple[str, str | bytes]] = (),
    *,
    secure: bool = True,
) -> ca_pb.SignResponse:
    """One Sign call (raises grpc.RpcError); ``secure`` False: on the plaintext port."""
    if secure:
        channel = grpc.secure_channel(
            cp.secure_xds_address, grpc.ssl_channel_credentials(root_certificates=root_pem)
        )
    else:
        channel = grpc.insecure_channel(cp.xds_address)
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    with channel:
        call = channel.unary_unary(SIGN, response_deserializer=ca_pb.SignResponse.FromString)
        response: ca_pb.SignResponse = call(raw, metadata=tuple(metadata), timeout=15)
    return response


def run_agent(token_file: Path, cert_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return meshctl(
        "agent", "--token-file", str(token_file), "--cert-dir", str(cert_dir), "--once", *extra
    )


def stored_ca(data_dir: Path) -> tuple[bytes, bytes]:
    """The CA key and chain (PEM) a control plane keeps in ``DATA_DIR/store.db``."""
    with sqlite3.connect(data_dir / "store.db") as db:
        key_pem, chain_pem = db.execute("SELECT key_pem, chain_pem FROM ca").fetchone()
    db.close()
    return key_pem.encode(), chain_pem.encode()
