"""Keys, CSRs and certificates as PEM, shared by workloads and the control plane.

Workload keys are EC P-256 (what Istio's agents make by default). The CA
fingerprint that join tokens carry is the SHA-256 of the root certificate's DER
encoding, lowercase hex (kubeadm's ``discovery-token-ca-cert-hash`` without its
``sha256:`` prefix).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshlib.errors import SecurityError
from meshlib.security.identity import SpiffeId

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (what grpc and Envoy read)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def build_csr(key: PrivateKey, identity: SpiffeId | None = None) -> bytes:
    """A CSR PEM for ``key``. The identity, if given, is only a hint: the control plane
    signs for the identity of the caller's token, whatever the CSR asks."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if identity is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; SecurityError naming ``what`` if there is none."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SecurityError(f"{what}: not a PEM certificate bundle ({exc})") from exc
    return certificates


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex: how tokens pin the CA."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def spiffe_id_of(certificate: x509.Certificate) -> SpiffeId | None:
    """The certificate's one SPIFFE URI SAN, or None (no SAN, several, not an identity)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class WorkloadCertificate:
    """A workload's key and certificate chain (leaf first) with the mesh's root."""

    key_pem: bytes = field(repr=False)  # never in logs or tracebacks
    chain_pem: bytes
    root_pem: bytes

    @property
    def leaf(self) -> x509.Certificate:
        return load_certificates(self.chain_pem, "certificate chain")[0]

    @property
    def identity(self) -> SpiffeId | None:
        return spiffe_id_of(self.leaf)

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    def renew_at(self, grace_ratio: float = 0.5) -> datetime:
        """When to renew: ``grace_ratio`` of the lifetime (Istio renews at half)."""
        return self.not_before + (self.not_after - self.not_before) * grace_ratio
