"""Certificate requests the CA accepts: a valid PEM CSR with a strong key.

Only the public key is used: the identity comes from the caller's token or
certificate, so the CSR's subject and SANs are ignored, whatever they say.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.ca.authority import IssuedKey

MIN_RSA_BITS = 2048
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


class CsrRejected(ValueError):
    """The CSR cannot be signed; the message names the field and the problem."""


def checked_public_key(csr_pem: str) -> IssuedKey:
    """The key of ``csr_pem`` after checking the PEM, signature and key strength."""
    if not csr_pem.strip():
        raise CsrRejected("csr_pem: is empty")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise CsrRejected(f"csr_pem: not a PEM certificate request ({exc})") from exc
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CsrRejected(f"csr_pem: public key unreadable ({exc})") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRejected(
                f"csr_pem: RSA key of {key.key_size} bits is too weak (at least {MIN_RSA_BITS})"
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in CURVES:
            raise CsrRejected(
                f"csr_pem: EC curve {key.curve.name} is not supported "
                f"(use {' or '.join(CURVES.values())})"
            )
    else:
        raise CsrRejected(
            f"csr_pem: {type(key).__name__.lstrip('_')} keys are not supported "
            "(use EC P-256/P-384 or RSA >= 2048 bits)"
        )
    if not csr.is_signature_valid:
        raise CsrRejected("csr_pem: the signature does not match its key")
    return key
