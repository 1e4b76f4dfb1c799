"""meshlib: a proxyless service mesh for Python.

with meshlib.Mesh() as mesh:             # bootstrap from GRPC_XDS_BOOTSTRAP
    with mesh.http_client() as http:
        http.get("http://attendees:8080/attendees/42")
    channel = mesh.grpc_channel("xds:///sessions:50051")
"""

from __future__ import annotations

from meshlib.errors import (
    BootstrapError,
    MeshError,
    NoHealthyEndpointError,
    NoRouteError,
    RegistrationError,
    RoutingError,
    ServiceNotFoundError,
    ServiceNotReadyError,
    XdsConnectionError,
    XdsError,
    XdsResourceNotFound,
    XdsValidationError,
)
from meshlib.mesh import Mesh
from meshlib.transport.errors import MeshRequestError
from meshlib.transport.grpc_aio_channel import AioMeshChannel
from meshlib.transport.grpc_channel import MeshChannel
from meshlib.transport.grpc_errors import MeshRpcError
from meshlib.transport.http import AsyncMeshTransport, MeshTransport
from meshlib.transport.registration import Registration

__version__ = "0.1.0"

__all__ = [
    "AioMeshChannel",
    "AsyncMeshTransport",
    "BootstrapError",
    "Mesh",
    "MeshChannel",
    "MeshError",
    "MeshRequestError",
    "MeshRpcError",
    "MeshTransport",
    "NoHealthyEndpointError",
    "NoRouteError",
    "Registration",
    "RegistrationError",
    "RoutingError",
    "ServiceNotFoundError",
    "ServiceNotReadyError",
    "XdsConnectionError",
    "XdsError",
    "XdsResourceNotFound",
    "XdsValidationError",
    "__version__",
]
