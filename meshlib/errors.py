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
    ├── RoutingError              (also an httpx.RequestError for the HTTP path)
    │   ├── ServiceNotFoundError  the mesh has no listener HOST:PORT for the service
    │   ├── NoRouteError          no virtual host / route matches the request
    │   ├── ServiceNotReadyError  the service's config did not arrive in time
    │   │   └── ControlPlaneUnreachableError  no service list yet, and the name is not in DNS
    │   └── NoHealthyEndpointError  the cluster has no endpoint to pick
    └── ResilienceError           a resilience mechanism stopped the call (carries
        │                         ``http_status`` / ``grpc_status`` for the transport)
        ├── DeadlineExceeded      the call's deadline passed; expired work is not started
        │   └── PerTryTimeoutError  one try exceeded the route's per-try timeout
        ├── CircuitBreakerOverflow  a cluster threshold (max_requests, ...) is full
        ├── CircuitOpenError      the failure-rate breaker is OPEN (or HALF_OPEN and full)
        ├── RateLimitedError      the local token bucket is empty
        ├── InjectedFaultError    fault injection aborted the request
        ├── RequestNotReplayable  a retry was due but the request body cannot be resent
        └── ResilienceValueError  (also ValueError) a policy value or propagated header is invalid
    SecurityError                 workload identity: certificates, join tokens, trust
    ├── IdentityError             (also ValueError) not a spiffe://TD/ns/NS/sa/SA identity
    ├── JoinTokenError            (also ValueError) a join token that cannot be read or used
    ├── JwtConfigError            (also ValueError) a JWT provider's keys cannot be used
    ├── CertificateRequestError   the control plane did not issue a certificate (or
    │                             could not be trusted: its CA is not the token's)
    │   └── CertificateServiceUnreachableError  it could not be reached (retried on
    │                             first contact: it may start after the workload)
    └── PeerIdentityError         (also ssl.SSLCertVerificationError) an endpoint's TLS
                                  peer is not an identity its cluster accepts

The HTTP path raises subclasses of these that are also ``httpx.RequestError``
(``meshlib.transport.errors``), so ``except httpx.RequestError`` and
``except meshlib.RoutingError`` both catch them.

Retries never add an error of their own: when they run out (attempts, budget
or deadline) the caller sees the last try's answer or exception. The transports
raise flavoured twins of the resilience errors (an ``httpx`` exception for the
HTTP path, the matching status code for gRPC) from the data every error carries.
"""

from __future__ import annotations

import ssl


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


class ControlPlaneUnreachableError(ServiceNotReadyError):
    """The mesh's service list has not arrived (the control plane is unreachable) and
    the name does not resolve in DNS either, so it can be neither routed nor passed
    through."""


class NoHealthyEndpointError(RoutingError):
    """The chosen cluster has no endpoint that can take the request."""


# gRPC status code values (grpc.StatusCode.X.value[0]) used below, without importing grpc.
_GRPC_DEADLINE_EXCEEDED = 4
_GRPC_UNAVAILABLE = 14


class ResilienceError(MeshError):
    """A resilience mechanism (deadline, breaker, rate limit, fault, retry) stopped the call.

    ``http_status`` and ``grpc_status`` are what a server-side proxy would answer
    with; transports map them to an httpx exception or a gRPC status. ``None``
    means the error has no wire status (it is the caller's own refusal).
    """

    http_status: int | None = 503
    grpc_status: int | None = _GRPC_UNAVAILABLE

    def __init__(
        self, message: str, *, http_status: int | None = None, grpc_status: int | None = None
    ) -> None:
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status
        if grpc_status is not None:
            self.grpc_status = grpc_status


class DeadlineExceeded(ResilienceError):
    """The call's deadline passed (or had passed before the work started)."""

    http_status = 504
    grpc_status = _GRPC_DEADLINE_EXCEEDED

    def __init__(self, message: str, *, timeout_s: float | None = None) -> None:
        super().__init__(message)
        self.timeout_s = timeout_s


class PerTryTimeoutError(DeadlineExceeded):
    """One try took longer than the route's per-try timeout (Envoy: 504 upstream timeout)."""


class CircuitBreakerOverflow(ResilienceError):
    """A cluster's circuit-breaker threshold is full; the call failed fast.

    ``threshold`` is the Envoy field name (``max_connections``,
    ``max_pending_requests``, ``max_requests``, ``max_retries``).
    """

    def __init__(self, message: str, *, cluster: str, threshold: str, limit: int) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.threshold = threshold
        self.limit = limit


class CircuitOpenError(ResilienceError):
    """The failure-rate breaker ``name`` rejected the call (it is OPEN, or HALF_OPEN and full)."""

    def __init__(self, message: str, *, name: str, state: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.name = name
        self.state = state
        self.retry_after_s = retry_after_s


class RateLimitedError(ResilienceError):
    """The local rate limit's token bucket is empty (Envoy local_ratelimit answers 429)."""

    http_status = 429
    grpc_status = _GRPC_UNAVAILABLE  # Envoy's default; RESOURCE_EXHAUSTED when configured

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        http_status: int | None = None,
        grpc_status: int | None = None,
        response_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message, http_status=http_status, grpc_status=grpc_status)
        self.retry_after_s = retry_after_s
        #: Headers the limiter adds to its answer (Envoy ``response_headers_to_add``).
        self.response_headers = response_headers


class InjectedFaultError(ResilienceError):
    """Fault injection aborted the request with ``http_status`` or ``grpc_status``."""

    def __init__(self, message: str, *, http_status: int | None, grpc_status: int | None) -> None:
        super().__init__(message)
        # An abort carries exactly the status it was configured with, nothing inherited.
        self.http_status = http_status
        self.grpc_status = grpc_status


class RequestNotReplayable(ResilienceError):
    """A retry was due, but the request body was streamed and cannot be sent again.

    ``last_result`` is the last try's answer when it was a response rather than
    an exception (the exception, if any, is ``__cause__``).
    """

    http_status = None
    grpc_status = None

    def __init__(self, message: str, *, last_result: object = None) -> None:
        super().__init__(message)
        self.last_result = last_result


class ResilienceValueError(ResilienceError, ValueError):
    """A resilience policy value or a propagated header (grpc-timeout, ...) is invalid."""

    http_status = 400
    grpc_status = 3  # INVALID_ARGUMENT


class SecurityError(MeshError):
    """Workload identity could not be established (certificates, join tokens, trust)."""


class IdentityError(SecurityError, ValueError):
    """A SPIFFE ID that is not ``spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT``."""


class JoinTokenError(SecurityError, ValueError):
    """A join token (or token file) that cannot be read or used; the message says why."""


class CertificateRequestError(SecurityError):
    """The control plane did not issue a certificate, or could not be trusted."""


class CertificateServiceUnreachableError(CertificateRequestError):
    """The control plane could not be reached for a certificate (connect failed,
    UNAVAILABLE, DEADLINE_EXCEEDED): worth retrying, unlike a refusal."""


class PeerIdentityError(SecurityError, ssl.SSLCertVerificationError):
    """An endpoint's TLS peer presents no SPIFFE ID its cluster accepts. Raised in the
    handshake, so HTTP clients report a connect error (retried, counted by outlier
    detection) whose message is this one."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "peer identity not accepted"


class JwtConfigError(SecurityError, ValueError):
    """A JWT provider that cannot be used (a JWKS that is not JSON, a bad key...)."""
