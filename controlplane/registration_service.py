"""The gRPC ``meshlib.registry.v1.Registry`` service, served next to ADS.

Serving processes (meshlib's ``mesh.register``) announce themselves on the
control plane's xDS port with these unary methods (proto:
``protos/meshlib/registry/v1/registry.proto``):

    /meshlib.registry.v1.Registry/Register    RegisterRequest   -> RegisterResponse
    /meshlib.registry.v1.Registry/Heartbeat   HeartbeatRequest  -> HeartbeatResponse
    /meshlib.registry.v1.Registry/Deregister  DeregisterRequest -> DeregisterResponse

Status codes: INVALID_ARGUMENT (details name the field, e.g. ``ports: ...``)
for a bad registration or an empty id; NOT_FOUND from Heartbeat when the
registration expired or never existed (register again). Deregister of an
unknown id succeeds. There is no generated ``_grpc`` module: the handlers are
built from the messages' ``FromString`` / ``SerializeToString``.

On the secure xDS address (TLS) every call must prove an identity, a join token
(``authorization: Bearer``) or a certificate proof (:mod:`meshlib.security.proof`):
UNAUTHENTICATED without one. The workload is registered under that identity (its
namespace; ``RegisteredWorkload.identity`` is the SPIFFE ID), and PERMISSION_DENIED
answers a request naming another namespace, or touching a registration made under
another identity. On the plaintext address registration is unauthenticated, as
before (refused with FAILED_PRECONDITION when the control plane turns it off), and
cannot touch a registration made under an identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf.message import DecodeError

from controlplane.ca import Security
from controlplane.ca.caller import Unauthenticated, caller_identity, is_tls
from controlplane.model import Locality, RegisteredWorkload
from controlplane.registry import (
    RegistrationRejected,
    RegistrationRequest,
    Registry,
    UnknownRegistration,
)
from meshlib._protos import registry_v1_pb2 as pb
from meshlib.security.identity import SpiffeId

log = structlog.get_logger(__name__)

SERVICE_NAME = "meshlib.registry.v1.Registry"
REGISTER_METHOD = f"/{SERVICE_NAME}/Register"
HEARTBEAT_METHOD = f"/{SERVICE_NAME}/Heartbeat"
DEREGISTER_METHOD = f"/{SERVICE_NAME}/Deregister"


def request_from_proto(message: Any, identity: SpiffeId | None = None) -> RegistrationRequest:
    """Map proto defaults to ours: weight 0 -> 1, ttl 0 -> server default, "" -> default.

    The locality is the ``locality`` message when set, else the deprecated
    ``locality_path`` string that clients before it sent."""
    return RegistrationRequest(
        service=message.service,
        address=message.address,
        ports=dict(message.ports),
        labels=dict(message.labels),
        locality=_locality(message),
        weight=message.weight or 1,
        ttl_s=message.ttl_seconds or None,
        namespace=identity.namespace if identity else message.namespace or "default",
        id=message.id or None,
        identity=str(identity) if identity else None,
    )


def _locality(message: Any) -> Locality | str:
    if not message.HasField("locality"):
        return str(message.locality_path)
    fields = message.locality
    return Locality(region=fields.region, zone=fields.zone, sub_zone=fields.sub_zone)


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, msg: str
) -> NoReturn:
    await context.abort(code, msg)
    raise AssertionError("context.abort returned")  # abort always raises


class RegistrationService:
    """The Registry gRPC servicer over a :class:`Registry`; ``security`` checks callers
    on the secure address, ``plaintext`` False refuses the plaintext address."""

    def __init__(
        self, registry: Registry, security: Security | None = None, *, plaintext: bool = True
    ) -> None:
        self._registry = registry
        self._security = security
        self._plaintext = plaintext

    async def _caller(
        self, context: grpc.aio.ServicerContext[Any, Any], method: str, raw: bytes
    ) -> SpiffeId | None:
        """The proven identity on TLS, None on the plaintext address (if allowed)."""
        if not is_tls(context):
            if not self._plaintext:
                await _abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "registration on the plaintext xDS address is turned off: register on "
                    "the secure address with a join token or workload certificate",
                )
            return None
        if self._security is None:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, "no CA to check callers")
        try:
            identity = caller_identity(
                context, method, raw, self._security.ca, self._security.tokens
            )
        except Unauthenticated as exc:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if identity is None:
            await _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "registration on the secure address needs a join token "
                "(authorization: Bearer) or a workload certificate proof",
            )
        return identity

    async def _check_owner(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        workload: RegisteredWorkload | None,
        identity: SpiffeId | None,
    ) -> None:
        """Only the identity a registration was made under may touch it."""
        if workload is None or workload.identity == (str(identity) if identity else None):
            return
        owner = workload.identity or "the plaintext address (no identity)"
        caller = identity or "an unauthenticated caller"
        await _abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            f"id {workload.id}: registered by {owner}, not {caller}",
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Register": _unary(self.register),
                "Heartbeat": _unary(self.heartbeat),
                "Deregister": _unary(self.deregister),
            },
        )

    async def register(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = await _parse(context, raw, pb.RegisterRequest)
        identity = await self._caller(context, REGISTER_METHOD, raw)
        if identity is not None and request.namespace not in ("", identity.namespace):
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"namespace: {request.namespace!r} is not the caller's namespace "
                f"{identity.namespace!r} ({identity})",
            )
        if request.id:
            await self._check_owner(context, self._registry.get(request.id), identity)
        try:
            workload = self._registry.register(request_from_proto(request, identity))
        except RegistrationRejected as exc:
            log.info("grpc_registration_rejected", field=exc.field, error=str(exc))
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.RegisterResponse(id=workload.id, ttl_seconds=workload.ttl_s)

    async def heartbeat(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = await _parse(context, raw, pb.HeartbeatRequest)
        identity = await self._caller(context, HEARTBEAT_METHOD, raw)
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        await self._check_owner(context, self._registry.get(request.id), identity)
        try:
            ttl_s = self._registry.heartbeat(request.id)
        except UnknownRegistration as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.HeartbeatResponse(ttl_seconds=ttl_s)

    async def deregister(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = await _parse(context, raw, pb.DeregisterRequest)
        identity = await self._caller(context, DEREGISTER_METHOD, raw)
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        await self._check_owner(context, self._registry.get(request.id), identity)
        self._registry.deregister(request.id)
        return pb.DeregisterResponse()


async def _parse(context: grpc.aio.ServicerContext[Any, Any], raw: bytes, kind: Any) -> Any:
    try:
        return kind.FromString(raw)
    except DecodeError as exc:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{kind.__name__}: {exc}")


def _unary(
    behaviour: Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]],
) -> grpc.RpcMethodHandler[Any, Any]:
    """Requests arrive as bytes: a certificate proof signs the bytes sent."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=bytes,
        response_serializer=lambda message: message.SerializeToString(),
    )
