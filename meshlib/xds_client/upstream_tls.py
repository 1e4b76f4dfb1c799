"""A cluster's TLS towards its endpoints, as decoded from CDS ``UpstreamTlsContext``.

meshlib reads what proxyless gRPC reads (gRFC A29): certificate-provider instances
for the workload's certificate and the root, and ``match_subject_alt_names`` for
the peer. Every provider instance means the workload's own certificate (meshlib's
:class:`~meshlib.security.keeper.CertificateKeeper`: a join token's, or the
bootstrap's file_watcher files). The peer is accepted when its SPIFFE ID (the one
URI SAN) matches one of the matchers; no matchers accept any peer the root signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshlib.xds_client.resources import HeaderMatchKind


@dataclass(frozen=True, slots=True)
class SanMatcher:
    """One ``envoy.type.matcher.v3.StringMatcher`` over a peer's SAN."""

    kind: HeaderMatchKind
    value: str
    ignore_case: bool = False

    def matches(self, san: str) -> bool:
        if self.kind is HeaderMatchKind.SAFE_REGEX:
            flags = re.IGNORECASE if self.ignore_case else 0
            return re.fullmatch(self.value, san, flags) is not None
        value, text = (self.value.lower(), san.lower()) if self.ignore_case else (self.value, san)
        if self.kind is HeaderMatchKind.EXACT:
            return text == value
        if self.kind is HeaderMatchKind.PREFIX:
            return text.startswith(value)
        if self.kind is HeaderMatchKind.SUFFIX:
            return text.endswith(value)
        return value in text  # CONTAINS

    def __str__(self) -> str:
        return (
            self.value if self.kind is HeaderMatchKind.EXACT else f"{self.kind.name}:{self.value}"
        )


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """mTLS (or server-only TLS, ``present_certificate`` False) towards a cluster's
    endpoints: the workload certificate, the mesh root, the accepted peer identities."""

    root_provider: str
    identity_provider: str = ""  # "" = present no client certificate
    san_matchers: tuple[SanMatcher, ...] = ()
    sni: str = ""

    @property
    def present_certificate(self) -> bool:
        return bool(self.identity_provider)

    def accepts(self, peer_identity: str) -> bool:
        """Whether a peer whose SPIFFE ID is ``peer_identity`` may serve this cluster."""
        return not self.san_matchers or any(m.matches(peer_identity) for m in self.san_matchers)

    def expected(self) -> str:
        """The accepted identities, for error messages."""
        return ", ".join(str(m) for m in self.san_matchers) or "any identity the mesh root signed"
