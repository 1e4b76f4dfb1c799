"""The mesh CA: its key and certificate, and the X.509-SVIDs it signs.

Either a root made on first start (EC P-256, :meth:`CertificateAuthority.new_root`;
the control plane keeps it in its store, :mod:`controlplane.ca.stored`, so replicas
share it) or an intermediate given as ``--ca-cert`` (the CA certificate, then its
chain up to and including the self-signed root) and ``--ca-key``
(:meth:`CertificateAuthority.from_files`).

Leaves follow the X.509-SVID rules: empty subject, exactly one URI SAN (critical),
CA:false, keyUsage critical digitalSignature (+keyEncipherment for RSA keys),
EKU serverAuth + clientAuth, lifetime clamped to the maximum and to the CA's own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshlib.security.identity import SpiffeId
from meshlib.security.pki import (
    certificate_pem,
    fingerprint,
    generate_key,
    spiffe_id_of,
)

ROOT_LIFETIME = timedelta(days=3650)
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
IssuedKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class CaError(ValueError):
    """The CA material cannot be used; the message names the file and the problem."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _self_signed_root(key: SigningKey, trust_domain: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "meshlib root CA"),
        ]
    )
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaError(f"{what} {path}: cannot read: {exc.strerror}") from exc


def _parse_key(data: bytes, where: str) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"{where}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaError(f"{where}: an EC or RSA key is needed, got {type(key).__name__}")
    return key


def _parse_chain(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CaError(f"{where}: not PEM certificates ({exc})") from exc


def _check_chain(chain: Sequence[x509.Certificate], key: SigningKey, where: str) -> None:
    """The CA certificate first (matching ``key``, a CA), each signed by the next, the
    last self-signed: the chain a leaf is served with."""
    if chain[0].public_key() != key.public_key():
        raise CaError(f"{where}: the first certificate does not belong to --ca-key")
    for position, certificate in enumerate(chain):
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise CaError(f"{where}: certificate {position + 1} is not a CA (basicConstraints)")
        issuer = chain[position + 1] if position + 1 < len(chain) else certificate
        try:
            certificate.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError) as exc:
            last = position + 1 == len(chain)
            hint = "the chain must end with the self-signed root" if last else "out of order"
            raise CaError(
                f"{where}: certificate {position + 1} is not signed by the next one ({hint})"
            ) from exc


class CertificateAuthority:
    """Signs workload and serving certificates; ``chain`` is the CA certificate up to
    the root (root last), ``root`` the trust anchor tokens pin."""

    def __init__(
        self,
        key: SigningKey,
        chain: Sequence[x509.Certificate],
        trust_domain: str,
        *,
        default_ttl_s: float = 86400.0,
        max_ttl_s: float = 7776000.0,
    ) -> None:
        self.key = key
        self.chain = tuple(chain)
        self.trust_domain = trust_domain
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self.fingerprint = fingerprint(self.root)

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def root_pem(self) -> bytes:
        return certificate_pem(self.root)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """What a leaf is served with after itself: the CA chain without the root."""
        return self.chain[:-1]

    @classmethod
    def new_root(
        cls, trust_domain: str, *, default_ttl_s: float = 86400.0, max_ttl_s: float = 7776000.0
    ) -> CertificateAuthority:
        """A new self-signed root (EC P-256) for ``trust_domain``."""
        key = generate_key()
        return cls(
            key,
            [_self_signed_root(key, trust_domain)],
            trust_domain,
            default_ttl_s=default_ttl_s,
            max_ttl_s=max_ttl_s,
        )

    @classmethod
    def from_pems(
        cls,
        key_pem: bytes,
        chain_pem: bytes,
        trust_domain: str,
        *,
        where: str,
        key_where: str | None = None,
        default_ttl_s: float = 86400.0,
        max_ttl_s: float = 7776000.0,
    ) -> CertificateAuthority:
        """The CA of this key and chain (checked); CaError naming ``where``."""
        key = _parse_key(key_pem, key_where or where)
        chain = _parse_chain(chain_pem, where)
        _check_chain(chain, key, where)
        return cls(key, chain, trust_domain, default_ttl_s=default_ttl_s, max_ttl_s=max_ttl_s)

    @classmethod
    def from_files(
        cls,
        ca_cert: Path,
        ca_key: Path,
        trust_domain: str,
        *,
        default_ttl_s: float = 86400.0,
        max_ttl_s: float = 7776000.0,
    ) -> CertificateAuthority:
        """The CA of ``--ca-cert``/``--ca-key``; CaError naming the file."""
        return cls.from_pems(
            _read(ca_key, "--ca-key"),
            _read(ca_cert, "--ca-cert"),
            trust_domain,
            where=f"--ca-cert {ca_cert}",
            key_where=f"--ca-key {ca_key}",
            default_ttl_s=default_ttl_s,
            max_ttl_s=max_ttl_s,
        )

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def chain_pem(self) -> bytes:
        return b"".join(certificate_pem(c) for c in self.chain)

    def lifetime_s(self, requested_s: float | None) -> float:
        """The requested lifetime (default when None or 0), clamped to the maximum."""
        return min(requested_s or self.default_ttl_s, self.max_ttl_s)

    def issue(
        self,
        public_key: IssuedKey,
        identity: SpiffeId,
        ttl_s: float | None = None,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> x509.Certificate:
        """An X.509-SVID for ``identity`` over ``public_key``: its URI SAN, and the one DNS
        SAN standing for it (``SpiffeId.dns_name``: grpcio checks only DNS names); more
        DNS/IP SANs only for the control plane's own serving certificate."""
        now = _now()
        not_after = min(now + timedelta(seconds=self.lifetime_s(ttl_s)), self._ca_not_after())
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(identity))]
        names += [x509.DNSName(name) for name in (identity.dns_name, *dns_names)]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )

    def chain_pems(self, leaf: x509.Certificate) -> list[bytes]:
        """The leaf then the intermediates, each as PEM."""
        return [certificate_pem(c) for c in (leaf, *self.intermediates)]

    def _ca_not_after(self) -> datetime:
        return min(c.not_valid_after_utc for c in self.chain)

    def issued_identity(self, leaf_pem: bytes) -> SpiffeId | None:
        """The identity of a workload certificate this CA signed and that is valid now,
        else None (another CA's, expired, not an SVID)."""
        try:
            leaf = x509.load_pem_x509_certificate(leaf_pem)
            leaf.verify_directly_issued_by(self.certificate)
        except (InvalidSignature, ValueError, TypeError):  # bad PEM, another issuer
            return None
        now = datetime.now(timezone.utc)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return None
        identity = spiffe_id_of(leaf)
        if identity is None or identity.trust_domain != self.trust_domain:
            return None
        return identity
