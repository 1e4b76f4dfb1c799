"""An endpoint connection's mTLS: the workload certificate out, the peer's SPIFFE ID in.

One definition of "the expected peer": the endpoint's cluster accepts the identities
of its CDS ``match_subject_alt_names`` (:meth:`UpstreamTls.accepts`).

- httpx: an ``ssl.SSLContext`` trusting the mesh root and presenting the workload
  certificate (key loaded from memory, :mod:`.memfd_keys`); its socket and
  memory-BIO classes check the peer's one URI SAN right after the handshake and
  fail it with :class:`~meshlib.errors.PeerIdentityError` (a connect error).
- grpcio cannot check URI SANs, only the DNS name it connects to. The mesh CA puts
  one DNS SAN per identity in every leaf (:attr:`SpiffeId.dns_name`), and EDS tells
  each endpoint's identity; the sub-channel is made with
  ``grpc.ssl_target_name_override`` = that identity's DNS name once the identity is
  checked against the cluster. An endpoint whose identity is unknown or not
  accepted gets a name no certificate carries, so its handshake fails (UNAVAILABLE,
  a connect failure) and the reason is logged.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.errors import IdentityError, PeerIdentityError, SecurityError
from meshlib.observability.logging import get_logger
from meshlib.routing.connection_pool import PoolSettings
from meshlib.security.identity import DNS_SUFFIX, SpiffeId
from meshlib.security.memfd_keys import load_workload_certificate
from meshlib.xds_client.resources import Endpoint, HeaderMatchKind
from meshlib.xds_client.upstream_tls import UpstreamTls

if TYPE_CHECKING:
    from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)

#: The name a gRPC sub-channel expects when no identity can be accepted.
UNACCEPTED_PEER_NAME = "identity-not-accepted" + DNS_SUFFIX

_warned: set[tuple[str, str, str]] = set()
_warned_lock = threading.Lock()


def check_peer(der: bytes | None, tls: UpstreamTls, where: str) -> SpiffeId:
    """The peer's SPIFFE ID when its cluster accepts it; PeerIdentityError otherwise."""
    if der is None:
        raise PeerIdentityError(f"{where}: the peer presented no certificate")
    from cryptography import x509  # only once a TLS peer is checked (a plaintext mesh never)

    from meshlib.security.pki import spiffe_id_of

    identity = spiffe_id_of(x509.load_der_x509_certificate(der))
    if identity is None:
        raise PeerIdentityError(f"{where}: the peer's certificate names no SPIFFE ID")
    if not tls.accepts(str(identity)):
        raise PeerIdentityError(
            f"{where}: the peer presents {identity}, not an identity this cluster "
            f"accepts ({tls.expected()})"
        )
    return identity


class _PeerCheckedSocket(ssl.SSLSocket):
    mesh_tls: UpstreamTls

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        where = f"endpoint {self.server_hostname or self.getpeername()}"
        check_peer(self.getpeercert(binary_form=True), self.mesh_tls, where)


class _PeerCheckedObject(ssl.SSLObject):
    mesh_tls: UpstreamTls

    def do_handshake(self) -> None:
        super().do_handshake()
        where = f"endpoint {self.server_hostname}"
        check_peer(self.getpeercert(binary_form=True), self.mesh_tls, where)


class EndpointSSLContext(ssl.SSLContext):
    """A client context for one cluster's endpoints (the httpx transports use TLS
    exactly when given one)."""


def endpoint_ssl_context(settings: PoolSettings) -> EndpointSSLContext:
    """The context for ``settings`` (which carry ``tls`` and ``certificate``)."""
    tls, certificate = _parts(settings)
    context = EndpointSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the peer is checked by identity, not host name
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=certificate.root_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise SecurityError(f"mesh root certificate: OpenSSL refused it ({exc})") from exc
    if tls.present_certificate:
        load_workload_certificate(context, certificate)
    context.set_alpn_protocols(["h2", "http/1.1"] if settings.http2 else ["http/1.1"])
    context.sslsocket_class = type("MeshPeerSocket", (_PeerCheckedSocket,), {"mesh_tls": tls})
    context.sslobject_class = type("MeshPeerObject", (_PeerCheckedObject,), {"mesh_tls": tls})
    return context


def grpc_endpoint_credentials(
    endpoint: Endpoint, settings: PoolSettings
) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    """Credentials and channel options for one endpoint's gRPC sub-channel."""
    tls, certificate = _parts(settings)
    present = tls.present_certificate
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certificate.root_pem,
        private_key=certificate.key_pem if present else None,
        certificate_chain=certificate.chain_pem if present else None,
    )
    name = expected_peer_name(endpoint, tls, settings.cluster)
    return credentials, [("grpc.ssl_target_name_override", name)]


def expected_peer_name(endpoint: Endpoint, tls: UpstreamTls, cluster: str) -> str:
    """The DNS SAN the endpoint must present: its (accepted) identity's."""
    identity = endpoint.identity or _single_expected(tls)
    if identity and tls.accepts(identity):
        try:
            return SpiffeId.parse(identity).dns_name
        except IdentityError:
            pass
    reason = (
        f"identity {identity} is not accepted ({tls.expected()})"
        if identity
        else "EDS names no identity for it and the cluster accepts several"
    )
    key = (cluster, endpoint.authority, reason)
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning(
            "endpoint_identity_not_accepted",
            cluster=cluster,
            endpoint=endpoint.authority,
            reason=reason,
        )
    return UNACCEPTED_PEER_NAME


def _single_expected(tls: UpstreamTls) -> str:
    exact = [m.value for m in tls.san_matchers if m.kind is HeaderMatchKind.EXACT]
    return exact[0] if len(exact) == 1 == len(tls.san_matchers) else ""


def _parts(settings: PoolSettings) -> tuple[UpstreamTls, WorkloadCertificate]:
    if settings.tls is None or settings.certificate is None:
        raise SecurityError(f"cluster {settings.cluster!r}: no TLS settings with a certificate")
    return settings.tls, settings.certificate
