"""Routing failures as gRPC errors: UNAVAILABLE with a clear details string."""

from __future__ import annotations

from typing import Any

import grpc

from meshlib.errors import RoutingError


class MeshRpcError(grpc.RpcError, grpc.Call, RoutingError):
    """A call meshlib could not route; a ``grpc.RpcError`` *and* a meshlib RoutingError."""

    def __init__(self, details: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def aio_unavailable(details: str) -> grpc.aio.AioRpcError:
    """The aio form: an ``AioRpcError`` with status UNAVAILABLE."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None
    )
