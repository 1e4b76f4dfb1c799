"""Get a workload certificate from the control plane's certificate service.

    certificate = obtain_certificate(token)              # first time: token only
    certificate = obtain_certificate(token, current=c)   # renew (token, or c's proof)
    certificate = renew_certificate(address, current)    # renew with the cert alone

The service is ``/meshlib.ca.v1.CertificateService/Sign`` on the secure xDS
address (proto ``protos/meshlib/ca/v1/ca.proto``). The key is made here and never
leaves the process; the identity is the token's (or the current certificate's),
whatever the CSR says. Answers are checked: the leaf must carry our key and the
expected identity, and the root the one trusted.
"""

from __future__ import annotations

import grpc

from meshlib._protos import ca_v1_pb2 as pb
from meshlib.errors import CertificateRequestError, CertificateServiceUnreachableError
from meshlib.security.identity import SpiffeId
from meshlib.security.join_token import read_claims
from meshlib.security.pki import (
    WorkloadCertificate,
    build_csr,
    generate_key,
    key_pem,
    load_certificates,
)
from meshlib.security.proof import proof_metadata
from meshlib.security.trust import pinned_root

SIGN_METHOD = "/meshlib.ca.v1.CertificateService/Sign"
CALL_TIMEOUT_S = 15.0


def _sign(
    address: str,
    root_pem: bytes,
    request: pb.SignRequest,
    metadata: tuple[tuple[str, str | bytes], ...],
) -> pb.SignResponse:
    credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
    with grpc.secure_channel(address, credentials) as channel:
        sign = channel.unary_unary(
            SIGN_METHOD,
            request_serializer=lambda m: m.SerializeToString(deterministic=True),
            response_deserializer=pb.SignResponse.FromString,
        )
        try:
            response: pb.SignResponse = sign(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            unreachable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            what = "could not be reached for" if unreachable else "refused"
            error = CertificateServiceUnreachableError if unreachable else CertificateRequestError
            raise error(
                f"control plane {address} {what} the certificate request: "
                f"{code.name if code else 'UNKNOWN'}: {exc.details()}"
            ) from exc
    return response


def _request(
    address: str,
    root_pem: bytes,
    expected: SpiffeId,
    *,
    token: str | None,
    current: WorkloadCertificate | None,
    ttl_s: int | None,
) -> WorkloadCertificate:
    key = generate_key()
    request = pb.SignRequest(csr_pem=build_csr(key, expected).decode(), ttl_seconds=ttl_s or 0)
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    if token is not None:
        metadata = (("authorization", f"Bearer {token}"),)
    elif current is not None:
        sent = request.SerializeToString(deterministic=True)
        metadata = proof_metadata(current, SIGN_METHOD, sent)
    response = _sign(address, root_pem, request, metadata)
    chain = "".join(response.cert_chain_pem).encode()
    issued = WorkloadCertificate(key_pem(key), chain, response.root_cert_pem.encode())
    where = f"control plane {address}"
    try:
        leaf = load_certificates(chain, "issued chain")[0]
        load_certificates(issued.root_pem, "issued root")
    except ValueError as exc:
        raise CertificateRequestError(f"{where}: answered {exc}") from exc
    if leaf.public_key() != key.public_key():
        raise CertificateRequestError(f"{where}: the certificate is not for the key sent")
    if issued.identity != expected:
        raise CertificateRequestError(
            f"{where}: the certificate names {issued.identity}, expected {expected}"
        )
    if issued.root_pem.strip() != root_pem.strip():
        raise CertificateRequestError(f"{where}: answered with another root than the one trusted")
    return issued


def obtain_certificate(
    token: str,
    *,
    address: str | None = None,
    current: WorkloadCertificate | None = None,
    ttl_s: int | None = None,
) -> WorkloadCertificate:
    """A new key and certificate for the token's identity. ``address`` overrides the
    token's; ``current`` (a certificate already held) gives the root to trust
    instead of learning it again."""
    claims = read_claims(token)
    address = address or claims.address
    root = current.root_pem if current is not None else pinned_root(address, claims.ca_fingerprint)
    return _request(address, root, claims.identity, token=token, current=None, ttl_s=ttl_s)


def renew_certificate(
    address: str, current: WorkloadCertificate, *, ttl_s: int | None = None
) -> WorkloadCertificate:
    """A new key and certificate for ``current``'s identity, proven by ``current``."""
    identity = current.identity
    if identity is None:
        raise CertificateRequestError("the current certificate names no SPIFFE identity")
    return _request(address, current.root_pem, identity, token=None, current=current, ttl_s=ttl_s)
