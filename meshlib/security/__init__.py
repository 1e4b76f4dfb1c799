"""Workload identity: SPIFFE IDs, keys and CSRs, join tokens, and getting a certificate
from the control plane (used by ``meshctl agent``, and by meshlib's ``Mesh`` with a token).
"""

from meshlib.security.ca_client import obtain_certificate, renew_certificate
from meshlib.security.identity import SpiffeId
from meshlib.security.join_token import JoinTokenClaims, read_claims, read_token_file
from meshlib.security.pki import WorkloadCertificate, build_csr, fingerprint, generate_key

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
