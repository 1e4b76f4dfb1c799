"""A workload certificate's private key never shows in its repr (logs, tracebacks,
``print(mesh.certificates.current())``): the key stays in memory only."""

from __future__ import annotations

from pathlib import Path

from meshlib.security.ca_client import obtain_certificate
from tests.security.support import create_token, secure_controlplane


def test_the_repr_of_a_workload_certificate_holds_no_key(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        certificate = obtain_certificate(create_token(cp, "app"), ttl_s=3600)
    assert b"PRIVATE KEY" in certificate.key_pem
    assert "PRIVATE KEY" not in repr(certificate)
    assert "PRIVATE KEY" not in str(certificate)
