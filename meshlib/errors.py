"""meshlib's one exception tree.

Every error meshlib raises derives from :class:`MeshError`. Errors are mapped at
layer boundaries (``raise MeshError(...) from exc``) so callers never see a
library's internals unless they ask for ``__cause__``.

    MeshError
    ├── BootstrapError            bootstrap file/env missing or invalid
    ├── XdsError
    │   ├── XdsValidationError    a resource failed validation (-> NACK)
    │   ├── XdsResourceNotFound   the control plane says it does not exist / timer fired
    │   └── XdsConnectionError    the ADS stream failed (ambient; fail static)
    ├── RegistrationError         the control plane refused or lost a registration
    └── RoutingError              (also an httpx.RequestError for the HTTP path)
        ├── ServiceNotFoundError  the mesh has no listener HOST:PORT for the service
        ├── NoRouteError          no virtual host / route matches the request
        ├── ServiceNotReadyError  the service's config did not arrive in time
        └── NoHealthyEndpointError  the cluster has no endpoint to pick

The HTTP path raises subclasses of these that are also ``httpx.RequestError``
(``meshlib.transport.errors``), so ``except httpx.RequestError`` and
``except meshlib.RoutingError`` both catch them.

Resilience errors (timeouts, overflow, open breaker, rate limited, injected
faults) join this tree under ``RoutingError``'s siblings in later issues.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error meshlib raises."""


class BootstrapError(MeshError):
    """The xDS bootstrap is missing or invalid; the message names the field."""


class XdsError(MeshError):
    """Something went wrong talking xDS."""


class XdsValidationError(XdsError):
    """A resource from the control plane failed validation.

    The message names the resource type, the resource name and the field; it is
    what the client sends back as the NACK's ``error_detail``.
    """


class XdsResourceNotFound(XdsError):
    """The control plane does not have the resource (absent from SotW, or timer)."""


class XdsConnectionError(XdsError):
    """The ADS stream to the control plane failed; the last good config stays."""


class RegistrationError(MeshError):
    """Registering, heartbeating or deregistering a workload failed."""


class RoutingError(MeshError):
    """A request could not be routed to an endpoint."""


class ServiceNotFoundError(RoutingError):
    """The mesh has no listener for the service (``HOST:PORT``): it is not a mesh service."""


class NoRouteError(RoutingError):
    """No virtual host or route matched the request."""


class ServiceNotReadyError(RoutingError):
    """The service's xDS config did not arrive within the wait timeout."""


class NoHealthyEndpointError(RoutingError):
    """The chosen cluster has no endpoint that can take the request."""
