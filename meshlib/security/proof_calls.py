"""Per-call proof of identity on the control plane's secure address.

The secure xDS address does not ask for client certificates (workloads without one
must reach it too), so registration calls prove the workload's identity per call
(:mod:`meshlib.security.proof`): a client interceptor adds the current
certificate's proof, signed over the method and the request's deterministic bytes
(what the registration stubs send).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from meshlib.security.keeper import CertificateKeeper
from meshlib.security.proof import proof_metadata


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class ProofInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the keeper's current certificate proof to every unary call."""

    def __init__(self, certificates: CertificateKeeper) -> None:
        self._certificates = certificates

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        sent = request.SerializeToString(deterministic=True)
        proof = proof_metadata(self._certificates.current(), details.method, sent)
        metadata = [*(details.metadata or ()), *proof]
        return continuation(
            _Details(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )


def with_proofs(channel: grpc.Channel, certificates: CertificateKeeper | None) -> grpc.Channel:
    """``channel`` whose calls prove ``certificates``' identity (as is without one)."""
    if certificates is None:
        return channel
    return grpc.intercept_channel(channel, ProofInterceptor(certificates))
