"""Workload identity: SPIFFE IDs, keys and CSRs, join tokens, and getting a certificate
from the control plane (used by ``meshctl agent``, and by meshlib's ``Mesh`` with a token).

The names below are imported on first use (PEP 562): a plaintext mesh imports a few
light modules of this package (``identity``, ``authz_model``) and never loads
cryptography or PyJWT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshlib.security.ca_client import obtain_certificate, renew_certificate
    from meshlib.security.identity import SpiffeId
    from meshlib.security.join_token import JoinTokenClaims, read_claims, read_token_file
    from meshlib.security.pki import WorkloadCertificate, build_csr, fingerprint, generate_key

_LAZY: dict[str, str] = {
    "obtain_certificate": "meshlib.security.ca_client",
    "renew_certificate": "meshlib.security.ca_client",
    "SpiffeId": "meshlib.security.identity",
    "JoinTokenClaims": "meshlib.security.join_token",
    "read_claims": "meshlib.security.join_token",
    "read_token_file": "meshlib.security.join_token",
    "WorkloadCertificate": "meshlib.security.pki",
    "build_csr": "meshlib.security.pki",
    "fingerprint": "meshlib.security.pki",
    "generate_key": "meshlib.security.pki",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshlib.security' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "JoinTokenClaims",
    "SpiffeId",
    "WorkloadCertificate",
    "build_csr",
    "fingerprint",
    "generate_key",
    "obtain_certificate",
    "read_claims",
    "read_token_file",
    "renew_certificate",
]
