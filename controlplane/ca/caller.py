"""Who is calling on the secure xDS address: a join token, or a certificate proof.

``authorization: Bearer TOKEN`` names the token's identity; the proof metadata of
:mod:`meshlib.security.proof` names the identity of a certificate this CA issued.
Nothing else counts: TLS alone proves only that the channel is private.
"""

from __future__ import annotations

from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from controlplane.ca.authority import CertificateAuthority
from controlplane.ca.tokens import JoinTokens, TokenRejected
from meshlib.security.identity import SpiffeId
from meshlib.security.proof import CERT_KEY, PROOF_KEY, TIME_KEY, verify_proof

Context = grpc.aio.ServicerContext[Any, Any]


class Unauthenticated(Exception):
    """The caller presented a proof of identity that does not hold; says why."""


def is_tls(context: Context) -> bool:
    """True when the call came over TLS (the secure xDS address)."""
    return context.auth_context().get("transport_security_type") == [b"ssl"]


def _metadata(context: Context) -> dict[str, str | bytes]:
    return {item[0]: item[1] for item in context.invocation_metadata() or ()}


def caller_identity(
    context: Context,
    method: str,
    request: bytes,
    ca: CertificateAuthority,
    tokens: JoinTokens,
) -> SpiffeId | None:
    """The proven identity of the caller, None when it offers no proof at all."""
    metadata = _metadata(context)
    authorization = metadata.get("authorization")
    if authorization is not None:
        scheme, _, token = str(authorization).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization: expected 'Bearer JOIN_TOKEN'")
        try:
            return tokens.verify(token.strip())
        except TokenRejected as exc:
            raise Unauthenticated(str(exc)) from exc
    if CERT_KEY not in metadata:
        return None
    leaf, proof, when = metadata.get(CERT_KEY), metadata.get(PROOF_KEY), metadata.get(TIME_KEY)
    if not isinstance(leaf, bytes) or not isinstance(proof, bytes) or not isinstance(when, str):
        raise Unauthenticated(f"{CERT_KEY} needs {PROOF_KEY} and {TIME_KEY} with it")
    proven = verify_proof(leaf, proof, when, method, request)
    if isinstance(proven, str):
        raise Unauthenticated(proven)
    identity = ca.issued_identity(proven.public_bytes(serialization.Encoding.PEM))
    if identity is None:
        raise Unauthenticated(
            f"{CERT_KEY}: not a valid workload certificate of this control plane's CA "
            "(another CA's, expired, or without one SPIFFE ID)"
        )
    return identity
