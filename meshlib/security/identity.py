"""SPIFFE identities as the mesh writes them: ``spiffe://TRUST_DOMAIN/ns/NS/sa/SA``.

Istio's form: the trust domain, then the Kubernetes namespace and service account.
Policies write the same identity without the scheme (``TD/ns/NS/sa/SA``, Istio's
principal), which :attr:`SpiffeId.principal` gives.

:attr:`SpiffeId.dns_name` is the one DNS SAN the mesh CA adds to every leaf beside
the URI SAN (X.509-SVID allows other SAN types), because grpcio's TLS checks only
DNS names: ``SA.NS.HASH.spiffe.invalid``, HASH the first 24 hex digits of the
SHA-256 of the SPIFFE ID. The readable part is for people; the hash makes it
unambiguous (names may hold dots, so ``a.b``/``c`` and ``a``/``b.c`` differ by it);
``.invalid`` (RFC 2606) can never be a real host.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from meshlib.errors import IdentityError

SCHEME = "spiffe://"
DNS_SUFFIX = ".spiffe.invalid"
DNS_HASH_HEX = 24
# A trust domain is a DNS-like name (SPIFFE: lowercase letters, digits, '.', '-', '_').
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
# Namespaces and service accounts are Kubernetes DNS labels / subdomains.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def check_trust_domain(value: str, what: str = "trust domain") -> str:
    """``value`` when it is a valid SPIFFE trust domain, else IdentityError naming ``what``."""
    if not _TRUST_DOMAIN.match(value):
        raise IdentityError(
            f"{what} {value!r}: must be lowercase letters, digits, '.', '-' or '_' "
            "(e.g. cluster.local)"
        )
    return value


def check_name(value: str, what: str) -> str:
    """``value`` when it is a valid namespace / service account name (DNS subdomain)."""
    if not _NAME.match(value):
        raise IdentityError(
            f"{what} {value!r}: must be a DNS name (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return value


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """One workload identity; ``str()`` is the SPIFFE ID URI."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        check_name(self.namespace, "namespace")
        check_name(self.service_account, "service account")

    def __str__(self) -> str:
        return f"{SCHEME}{self.principal}"

    @property
    def uri(self) -> str:
        return str(self)

    @property
    def principal(self) -> str:
        """Istio's principal form, as AuthorizationPolicy writes it."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def dns_name(self) -> str:
        """The DNS SAN standing for this identity (see the module docstring)."""
        digest = hashlib.sha256(str(self).encode()).hexdigest()[:DNS_HASH_HEX]
        readable = f"{self.service_account}.{self.namespace}."
        if len(readable) + DNS_HASH_HEX + len(DNS_SUFFIX) > 253:
            readable = ""  # only the hash when the names are too long for DNS
        return f"{readable}{digest}{DNS_SUFFIX}"

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """``spiffe://TD/ns/NS/sa/SA``; IdentityError saying what is wrong otherwise."""
        if not text.startswith(SCHEME):
            raise IdentityError(f"identity {text!r}: must start with {SCHEME}")
        parts = text[len(SCHEME) :].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise IdentityError(
                f"identity {text!r}: must be spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT"
            )
        return cls(parts[0], parts[2], parts[4])
