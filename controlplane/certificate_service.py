"""The gRPC ``meshlib.ca.v1.CertificateService`` on the secure xDS address.

    /meshlib.ca.v1.CertificateService/Sign   SignRequest -> SignResponse

The caller proves an identity with a join token (``authorization: Bearer``) or,
to renew, with its current certificate (:mod:`meshlib.security.proof`); the
certificate names that identity, never what the CSR asks for. Status codes:
FAILED_PRECONDITION on the plaintext address (tokens and keys travel over TLS
only), UNAUTHENTICATED for no proof or a bad one (expired, revoked, forged,
another CA's), INVALID_ARGUMENT for a bad CSR or message, naming what.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf.message import DecodeError

from controlplane.ca.authority import CertificateAuthority
from controlplane.ca.caller import Context, Unauthenticated, caller_identity, is_tls
from controlplane.ca.csr import CsrRejected, checked_public_key
from controlplane.ca.tokens import JoinTokens
from meshlib._protos import ca_v1_pb2 as pb

log = structlog.get_logger(__name__)

SERVICE_NAME = "meshlib.ca.v1.CertificateService"
SIGN_METHOD = f"/{SERVICE_NAME}/Sign"


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    log.info("certificate_refused", code=code.name, reason=message)
    await context.abort(code, message)
    raise AssertionError("context.abort returned")


class CertificateService:
    """Signs workload certificates for proven identities."""

    def __init__(self, ca: CertificateAuthority, tokens: JoinTokens) -> None:
        self._ca = ca
        self._tokens = tokens

    def add_to_server(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        sign = grpc.unary_unary_rpc_method_handler(
            self.sign,
            request_deserializer=bytes,  # parsed in sign: the proof covers the bytes sent
            response_serializer=lambda message: message.SerializeToString(),
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"Sign": sign})

    async def sign(self, raw: bytes, context: Context) -> pb.SignResponse:
        if not is_tls(context):
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "the certificate service answers on the secure xDS address (TLS) only",
            )
        try:
            request = pb.SignRequest.FromString(raw)
        except DecodeError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"SignRequest: {exc}")
        try:
            identity = caller_identity(context, SIGN_METHOD, raw, self._ca, self._tokens)
        except Unauthenticated as exc:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if identity is None:
            await _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "no join token (authorization: Bearer TOKEN) and no certificate proof",
            )
        try:
            key = checked_public_key(request.csr_pem)
        except CsrRejected as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        leaf = self._ca.issue(key, identity, request.ttl_seconds or None)
        log.info(
            "certificate_issued",
            identity=str(identity),
            serial=format(leaf.serial_number, "x"),
            not_after=leaf.not_valid_after_utc.isoformat(),
        )
        return pb.SignResponse(
            cert_chain_pem=[pem.decode() for pem in self._ca.chain_pems(leaf)],
            root_cert_pem=self._ca.root_pem.decode(),
            spiffe_id=str(identity),
        )
