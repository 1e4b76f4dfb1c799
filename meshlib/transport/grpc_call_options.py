"""A gRPC call's options (what grpcio's multicallables take besides the request), typed.

Every layer of the gRPC path (planning, the resilience stages, each try, the
shadows) hands the caller's options on as one immutable :class:`CallOptions`;
a layer that changes one (the try's ``timeout``, the plan's metadata mutations,
``grpc-previous-rpc-attempts``) makes a new one with ``_replace``, so a retry or
a mirror never sees another try's change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from meshlib.transport.grpc_routing import Metadata


class CallOptions(NamedTuple):
    """The options of one gRPC call, as grpcio names them."""

    timeout: float | None = None
    metadata: Metadata | None = None
    credentials: grpc.CallCredentials | None = None
    wait_for_ready: bool | None = None
    compression: grpc.Compression | None = None

    def send(self, send: Callable[..., Any], request: Any) -> Any:
        """``send(request, ...)`` with these options (a grpcio multicallable, its
        ``with_call`` or ``future``)."""
        return send(
            request,
            timeout=self.timeout,
            metadata=self.metadata,
            credentials=self.credentials,
            wait_for_ready=self.wait_for_ready,
            compression=self.compression,
        )


__all__ = ["CallOptions"]
