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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
import structlog

from controlplane.model import Locality
from controlplane.registry import (
    RegistrationRejected,
    RegistrationRequest,
    Registry,
    UnknownRegistration,
)
from meshlib._protos import registry_v1_pb2 as pb

log = structlog.get_logger(__name__)

SERVICE_NAME = "meshlib.registry.v1.Registry"
REGISTER_METHOD = f"/{SERVICE_NAME}/Register"
HEARTBEAT_METHOD = f"/{SERVICE_NAME}/Heartbeat"
DEREGISTER_METHOD = f"/{SERVICE_NAME}/Deregister"


def request_from_proto(message: Any) -> RegistrationRequest:
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
        namespace=message.namespace or "default",
        id=message.id or None,
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
    """The Registry gRPC servicer over a :class:`Registry`."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def add_to_server(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Register": _unary(self.register, pb.RegisterRequest),
                "Heartbeat": _unary(self.heartbeat, pb.HeartbeatRequest),
                "Deregister": _unary(self.deregister, pb.DeregisterRequest),
            },
        )

    async def register(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            workload = self._registry.register(request_from_proto(request))
        except RegistrationRejected as exc:
            log.info("grpc_registration_rejected", field=exc.field, error=str(exc))
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.RegisterResponse(id=workload.id, ttl_seconds=workload.ttl_s)

    async def heartbeat(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        try:
            ttl_s = self._registry.heartbeat(request.id)
        except UnknownRegistration as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.HeartbeatResponse(ttl_seconds=ttl_s)

    async def deregister(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not request.id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        self._registry.deregister(request.id)
        return pb.DeregisterResponse()


def _unary(
    behaviour: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]],
    request_type: Any,
) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=request_type.FromString,
        response_serializer=lambda message: message.SerializeToString(),
    )
