"""What a workload's certificate tells people: its repr never shows the private key
(logs, tracebacks, ``print(mesh.certificates.current())``), and a request the control
plane could not even receive says so rather than 'refused'."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlib.errors import CertificateRequestError
from meshlib.security.ca_client import obtain_certificate, renew_certificate
from tests.security.support import create_token, secure_controlplane


def test_the_repr_of_a_workload_certificate_holds_no_key(tmp_path: Path) -> None:
    with secure_controlplane(tmp_path) as cp:
        certificate = obtain_certificate(create_token(cp, "app"), ttl_s=3600)
    assert b"PRIVATE KEY" in certificate.key_pem
    assert "PRIVATE KEY" not in repr(certificate)
    assert "PRIVATE KEY" not in str(certificate)


def test_a_renewal_while_the_control_plane_is_down_says_unreachable(tmp_path: Path) -> None:
    """Not 'refused': the operator looks for a down control plane, not a bad token."""
    with secure_controlplane(tmp_path) as cp:
        certificate = obtain_certificate(create_token(cp, "app"), ttl_s=3600)
        address = cp.secure_xds_address
    with pytest.raises(CertificateRequestError) as caught:
        renew_certificate(address, certificate)
    assert f"control plane {address} could not be reached for the certificate request" in str(
        caught.value
    )
