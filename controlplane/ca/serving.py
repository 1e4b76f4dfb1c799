"""The control plane's own TLS certificate on the secure xDS address.

Identity ``spiffe://TD/ns/mesh-system/sa/mesh-controlplane``, with DNS and IP SANs
for the names clients dial (localhost and loopback always; the bound host when it
is not a wildcard; this machine's host name). Served with the CA chain up to and
including the root, so a workload can pin the root by the fingerprint in its
token. Renewed at half its lifetime: each new handshake asks for the current one.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from datetime import datetime, timezone

import grpc

from controlplane.ca.authority import CertificateAuthority
from meshlib.security.identity import SpiffeId
from meshlib.security.pki import WorkloadCertificate, certificate_pem, generate_key, key_pem

CONTROL_PLANE_NAMESPACE = "mesh-system"
CONTROL_PLANE_ACCOUNT = "mesh-controlplane"
_WILDCARDS = {"0.0.0.0", "::", ""}


def control_plane_identity(trust_domain: str) -> SpiffeId:
    return SpiffeId(trust_domain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_ACCOUNT)


def _subject_names(host: str) -> tuple[list[str], list[str]]:
    dns, ips = ["localhost", socket.gethostname()], ["127.0.0.1", "::1"]
    if host not in _WILDCARDS:
        try:
            ips.append(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            dns.append(host)
    return sorted(set(dns)), sorted(set(ips))


class ServingCertificate:
    """Holds the serving certificate and makes grpc server credentials that follow it."""

    def __init__(self, ca: CertificateAuthority, host: str) -> None:
        self._ca = ca
        self._host = host
        self._lock = threading.Lock()
        self.current = self._issue()

    def _issue(self) -> WorkloadCertificate:
        key = generate_key()
        dns, ips = _subject_names(self._host)
        leaf = self._ca.issue(
            key.public_key(),
            control_plane_identity(self._ca.trust_domain),
            self._ca.max_ttl_s,
            dns_names=dns,
            ip_addresses=ips,
        )
        chain = b"".join([*self._ca.chain_pems(leaf), certificate_pem(self._ca.root)])
        return WorkloadCertificate(key_pem(key), chain, self._ca.root_pem)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.current.key_pem, self.current.chain_pem)]
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration:
        """Called by grpc before each handshake: a new configuration once renewed (None:
        keep the one in force, which grpc's stubs do not spell)."""
        with self._lock:
            if datetime.now(timezone.utc) < self.current.renew_at():
                return None  # type: ignore[return-value]
            self.current = self._issue()
            return self._configuration()

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._configuration(), self._fetch)
