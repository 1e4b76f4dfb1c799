"""Test certificates: a mesh root and X.509-SVIDs (one URI SAN), written as a cert dir.

Security tests of the control plane's xDS (Envoy, grpcio) need certificates before
the CA is involved; these follow the SVID rules (CA:false, digitalSignature,
serverAuth+clientAuth) so the data planes treat them as mesh certificates.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.translate.security_tls import sds_files
from meshlib.security.pki import WorkloadCertificate

CERT_CHAIN, KEY, ROOT_CERT = "cert-chain.pem", "key.pem", "root-cert.pem"


@dataclass(frozen=True)
class MeshRoot:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_root(name: str = "meshlib test root") -> MeshRoot:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return MeshRoot(certificate, key)


def issue_svid(
    root: MeshRoot,
    spiffe_id: str,
    *,
    dns_names: tuple[str, ...] = (),
    lifetime: datetime.timedelta = datetime.timedelta(hours=1),
) -> WorkloadCertificate:
    """An X.509-SVID for ``spiffe_id`` (``dns_names`` added for clients that check host
    names), with a fresh key, as meshlib holds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _svid(root, key, spiffe_id, dns_names, lifetime)
    return WorkloadCertificate(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        chain_pem=certificate.public_bytes(serialization.Encoding.PEM),
        root_pem=root.pem,
    )


def _svid(
    root: MeshRoot,
    key: ec.EllipticCurvePrivateKey,
    spiffe_id: str,
    dns_names: tuple[str, ...] = (),
    lifetime: datetime.timedelta = datetime.timedelta(hours=1),
) -> x509.Certificate:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    names += [x509.DNSName(name) for name in dns_names]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + lifetime)
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )


def write_svid(root: MeshRoot, spiffe_id: str, directory: Path) -> Path:
    """Write ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem`` for ``spiffe_id``, and
    the SDS files an Envoy sidecar reads them through (as ``meshctl agent`` does)."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _svid(root, key, spiffe_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CERT_CHAIN).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / ROOT_CERT).write_bytes(root.pem)
    for name, text in sds_files(str(directory.resolve())).items():
        (directory / name).write_text(text)
    return directory
