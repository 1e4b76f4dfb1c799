"""A grpcio server that tells the inbound policy which ports it serves.

grpcio does not say which port a call came in on, nor hook port binding; so
``mesh.grpc_server()`` returns the ``grpc.server(...)`` wrapped in
:class:`MeshGrpcServer` (``grpc.aio``: :class:`AioMeshGrpcServer`), whose
``add_insecure_port`` / ``add_secure_port`` bind as usual and then start the watch of
that port's inbound listener (:class:`~meshlib.serving.inbound_policy.InboundPolicy`)
before the server starts, as grpcio's xDS server asks for its listener. Everything
else is the wrapped server's.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc
import grpc.aio

from meshlib.serving.inbound_policy import InboundPolicy


def _host(address: str) -> str:
    host, _, _ = address.rpartition(":")
    return host.strip("[]")


class MeshGrpcServer(grpc.Server):
    """``grpc.Server`` whose ports are watched by ``policy`` (see the module)."""

    def __init__(self, server: grpc.Server, policy: InboundPolicy) -> None:
        self._server = server
        self._policy = policy

    def add_insecure_port(self, address: str) -> int:
        port = self._server.add_insecure_port(address)
        if port:
            self._policy.serve(_host(address), port, tls=False)
        return port

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        port = self._server.add_secure_port(address, server_credentials)
        if port:
            self._policy.serve(_host(address), port, tls=True)
        return port

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        # grpc's base class has this as a do-nothing method: delegate, or generated
        # servicers (which call it) would lose their handlers.
        self._server.add_registered_method_handlers(service_name, method_handlers)  # type: ignore[attr-defined]

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        event: threading.Event = self._server.stop(grace)
        self._policy.close()
        return event

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class AioMeshGrpcServer(grpc.aio.Server):
    """The ``grpc.aio.Server`` twin of :class:`MeshGrpcServer`."""

    def __init__(self, server: grpc.aio.Server, policy: InboundPolicy) -> None:
        self._server = server
        self._policy = policy

    def add_insecure_port(self, address: str) -> int:
        port = self._server.add_insecure_port(address)
        if port:
            self._policy.serve(_host(address), port, tls=False)
        return port

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        port = self._server.add_secure_port(address, server_credentials)
        if port:
            self._policy.serve(_host(address), port, tls=True)
        return port

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        # grpc's base class has this as a do-nothing method: delegate, or generated
        # servicers (which call it) would lose their handlers.
        self._server.add_registered_method_handlers(service_name, method_handlers)  # type: ignore[attr-defined]

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)
        self._policy.close()

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self._server.wait_for_termination(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)
