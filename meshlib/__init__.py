"""meshlib: a proxyless service mesh for Python.

with meshlib.Mesh() as mesh:             # bootstrap from GRPC_XDS_BOOTSTRAP
    with mesh.http_client() as http:
        http.get("http://attendees:8080/attendees/42")
    channel = mesh.grpc_channel("xds:///sessions:50051")

The public surface: this module's ``__all__``, and :mod:`meshlib.errors`,
:mod:`meshlib.asgi`, :mod:`meshlib.serving`, :mod:`meshlib.testing`,
:mod:`meshlib.resilience`, :mod:`meshlib.xds_client`.
Every other package is internal; inside them a module named ``_name`` is private
to its package (docs/api.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from meshlib._version import __version__
from meshlib.errors import (
    BootstrapError,
    CircuitBreakerOverflow,
    CircuitOpenError,
    ControlPlaneUnreachableError,
    DeadlineExceeded,
    InjectedFaultError,
    MeshError,
    NoHealthyEndpointError,
    NoRouteError,
    PerTryTimeoutError,
    RateLimitedError,
    RegistrationError,
    RequestNotReplayable,
    ResilienceError,
    RoutingError,
    ServiceNotFoundError,
    ServiceNotReadyError,
    XdsConnectionError,
    XdsError,
    XdsResourceNotFound,
    XdsValidationError,
)

if TYPE_CHECKING:
    from meshlib.asgi import DeadlineMiddleware
    from meshlib.mesh import Mesh
    from meshlib.resilience import (
        BreakerConfig,
        CircuitBreaker,
        TokenBucket,
        breakers,
        circuit_breaker,
        deadline_scope,
        fallback,
        fallback_cause,
        retry,
        timeout,
    )
    from meshlib.security.peer import peer_identity
    from meshlib.transport.errors import MeshRequestError
    from meshlib.transport.grpc_aio_channel import AioMeshChannel
    from meshlib.transport.grpc_channel import MeshChannel
    from meshlib.transport.grpc_errors import MeshRpcError
    from meshlib.transport.grpc_server import (
        AioDeadlineServerInterceptor,
        AioMeshServerInterceptor,
        DeadlineServerInterceptor,
        MeshServerInterceptor,
    )
    from meshlib.transport.http import AsyncMeshTransport, MeshTransport
    from meshlib.transport.registration import Registration

# Everything but the errors is imported on first use (PEP 562): a process that needs one
# corner of meshlib (meshctl, the control plane) does not pay for the whole package.
_LAZY: dict[str, str] = {
    "DeadlineMiddleware": "meshlib.asgi",
    "Mesh": "meshlib.mesh",
    "BreakerConfig": "meshlib.resilience",
    "CircuitBreaker": "meshlib.resilience",
    "TokenBucket": "meshlib.resilience",
    "breakers": "meshlib.resilience",
    "circuit_breaker": "meshlib.resilience",
    "deadline_scope": "meshlib.resilience",
    "fallback": "meshlib.resilience",
    "fallback_cause": "meshlib.resilience",
    "retry": "meshlib.resilience",
    "timeout": "meshlib.resilience",
    "peer_identity": "meshlib.security.peer",
    "MeshRequestError": "meshlib.transport.errors",
    "AioMeshChannel": "meshlib.transport.grpc_aio_channel",
    "MeshChannel": "meshlib.transport.grpc_channel",
    "MeshRpcError": "meshlib.transport.grpc_errors",
    "AioDeadlineServerInterceptor": "meshlib.transport.grpc_server",
    "AioMeshServerInterceptor": "meshlib.transport.grpc_server",
    "DeadlineServerInterceptor": "meshlib.transport.grpc_server",
    "MeshServerInterceptor": "meshlib.transport.grpc_server",
    "AsyncMeshTransport": "meshlib.transport.http",
    "MeshTransport": "meshlib.transport.http",
    "Registration": "meshlib.transport.registration",
}


#: The public submodules, reachable as attributes after a bare ``import meshlib``
#: (``meshlib.asgi.MeshMiddleware(...)``, as docs/api.md writes it), imported on first use.
_SUBMODULES = frozenset({"asgi", "errors", "resilience", "serving", "testing", "xds_client"})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f"meshlib.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = [
    "AioDeadlineServerInterceptor",
    "AioMeshChannel",
    "AioMeshServerInterceptor",
    "AsyncMeshTransport",
    "BootstrapError",
    "BreakerConfig",
    "CircuitBreaker",
    "CircuitBreakerOverflow",
    "CircuitOpenError",
    "ControlPlaneUnreachableError",
    "DeadlineExceeded",
    "DeadlineMiddleware",
    "DeadlineServerInterceptor",
    "InjectedFaultError",
    "Mesh",
    "MeshChannel",
    "MeshError",
    "MeshRequestError",
    "MeshRpcError",
    "MeshServerInterceptor",
    "MeshTransport",
    "NoHealthyEndpointError",
    "NoRouteError",
    "PerTryTimeoutError",
    "RateLimitedError",
    "Registration",
    "RegistrationError",
    "RequestNotReplayable",
    "ResilienceError",
    "RoutingError",
    "ServiceNotFoundError",
    "ServiceNotReadyError",
    "TokenBucket",
    "XdsConnectionError",
    "XdsError",
    "XdsResourceNotFound",
    "XdsValidationError",
    "__version__",
    "breakers",
    "circuit_breaker",
    "deadline_scope",
    "fallback",
    "fallback_cause",
    "peer_identity",
    "retry",
    "timeout",
]
