"""meshlib's routing errors as the HTTP path raises them.

Each is both the meshlib error (``except meshlib.NoRouteError``) and an httpx
error (``except httpx.RequestError``), so httpx users' existing error handling
keeps working. Errors meaning "could not reach any endpoint" are
``httpx.ConnectError``; the rest are plain ``httpx.RequestError``.
"""

from __future__ import annotations

import httpx

from meshlib.errors import (
    ControlPlaneUnreachableError,
    NoHealthyEndpointError,
    NoRouteError,
    RoutingError,
    ServiceNotFoundError,
    ServiceNotReadyError,
)


class MeshRequestError(RoutingError, httpx.RequestError):
    """Base of routing errors raised through httpx."""


class MeshNoRouteError(NoRouteError, MeshRequestError):
    """No virtual host or route matched the request."""


class MeshServiceNotFoundError(ServiceNotFoundError, MeshRequestError, httpx.ConnectError):
    """The mesh has no listener for the service."""


class MeshServiceNotReadyError(ServiceNotReadyError, MeshRequestError, httpx.ConnectError):
    """The service's config did not arrive in time."""


class MeshControlPlaneUnreachableError(ControlPlaneUnreachableError, MeshServiceNotReadyError):
    """No service list yet and the name does not resolve: neither routed nor passed through."""


class MeshNoHealthyEndpointError(NoHealthyEndpointError, MeshRequestError, httpx.ConnectError):
    """The chosen cluster has no endpoint to send to."""


_BY_TYPE: dict[type[RoutingError], type[MeshRequestError]] = {
    NoRouteError: MeshNoRouteError,
    ServiceNotFoundError: MeshServiceNotFoundError,
    ControlPlaneUnreachableError: MeshControlPlaneUnreachableError,
    ServiceNotReadyError: MeshServiceNotReadyError,
    NoHealthyEndpointError: MeshNoHealthyEndpointError,
    RoutingError: MeshRequestError,
}


def routing_error_as_httpx(error: RoutingError, request: httpx.Request) -> MeshRequestError:
    """The httpx-compatible twin of ``error`` (same message), bound to ``request``."""
    if isinstance(error, MeshRequestError):
        return error
    for cls in type(error).__mro__:
        mapped = _BY_TYPE.get(cls)
        if mapped is not None:
            return mapped(str(error), request=request)
    return MeshRequestError(str(error), request=request)
