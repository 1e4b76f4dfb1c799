"""Proof that a caller holds a workload certificate, carried in gRPC metadata.

grpcio's servers either require a client certificate or never ask for one, so
the control plane's secure port (which must also admit workloads that have no
certificate yet) cannot see client certificates in TLS. A workload proves its
certificate instead by signing the call with the certificate's key:

    mesh-client-cert-bin    the leaf certificate, DER
    mesh-client-proof-time  seconds since the epoch, when signed
    mesh-client-proof-bin   signature over "meshlib-proof-v1\\nMETHOD\\nTIME\\n" +
                            SHA-256(request bytes), ECDSA-SHA256 or RSA PKCS#1 v1.5

The proof is bound to the method and the request, and only sent inside TLS.
"""

from __future__ import annotations

import hashlib
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from meshlib.security.pki import WorkloadCertificate

CERT_KEY = "mesh-client-cert-bin"
PROOF_KEY = "mesh-client-proof-bin"
TIME_KEY = "mesh-client-proof-time"
MAX_SKEW_S = 300
Metadata = tuple[tuple[str, str | bytes], ...]


def _message(method: str, when: str, request: bytes) -> bytes:
    return b"meshlib-proof-v1\n%s\n%s\n%s" % (
        method.encode(),
        when.encode(),
        hashlib.sha256(request).digest(),
    )


def proof_metadata(
    certificate: WorkloadCertificate, method: str, request: bytes, now: float | None = None
) -> Metadata:
    """The metadata proving ``certificate`` for one call of ``method`` with ``request``
    (the serialized request message, deterministic)."""
    key = serialization.load_pem_private_key(certificate.key_pem, password=None)
    when = str(int(time.time() if now is None else now))
    message = _message(method, when, request)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(f"unsupported workload key {type(key).__name__}")
    leaf = certificate.leaf.public_bytes(serialization.Encoding.DER)
    return ((CERT_KEY, leaf), (TIME_KEY, when), (PROOF_KEY, signature))


def verify_proof(
    leaf_der: bytes,
    signature: bytes,
    when: str,
    method: str,
    request: bytes,
    now: float | None = None,
) -> x509.Certificate | str:
    """The proven leaf certificate, or why the proof does not hold (its issuer and
    validity are the verifier's to check)."""
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        return f"{CERT_KEY}: not a DER certificate"
    if not when.isdigit():
        return f"{TIME_KEY}: not a whole number of seconds"
    current = time.time() if now is None else now
    if abs(current - int(when)) > MAX_SKEW_S:
        return f"{TIME_KEY}: more than {MAX_SKEW_S}s away from the server's clock"
    message = _message(method, when, request)
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return f"{CERT_KEY}: unsupported key type {type(key).__name__}"
    except InvalidSignature:
        return f"{PROOF_KEY}: the signature does not match the certificate's key"
    return leaf
