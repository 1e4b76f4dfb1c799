"""Models of a serving workload's inbound listener: its filter chain, TLS, RBAC and JWT.

A server-side Listener (``xds.istio.io/grpc/lds/inbound/IP:PORT``, gRFC A36) decodes
to an :class:`InboundListenerResource`: one filter chain whose HttpConnectionManager
holds, in order, the HTTP filters that decide whether a call may run: RBAC
(:class:`RbacConfig`, gRFC A41 / Envoy's ``envoy.extensions.filters.http.rbac.v3``)
and JWT authentication (:class:`JwtAuthnConfig`, Envoy's
``envoy.extensions.filters.http.jwt_authn.v3``), then the router. These are plain
data (:mod:`meshlib.security.authz_model`): :mod:`meshlib.security.rbac` and
:mod:`meshlib.security.jwt_authn` evaluate them.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshlib.security.authz_model import JWT_AUTHN_FILTER_NAME, JwtAuthnConfig, RbacConfig

RBAC_FILTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
JWT_AUTHN_FILTER_TYPE_URL = (
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
)


InboundFilterConfig = RbacConfig | JwtAuthnConfig


@dataclass(frozen=True, slots=True)
class InboundFilter:
    name: str
    config: InboundFilterConfig


@dataclass(frozen=True, slots=True)
class DownstreamTls:
    """The chain's ``DownstreamTlsContext``: mTLS when ``require_client_certificate``;
    certificates from the bootstrap's certificate provider instances."""

    require_client_certificate: bool
    identity_instance: str = ""
    validation_instance: str = ""


@dataclass(frozen=True, slots=True)
class InboundListenerResource:
    """A server-side listener: the address it names and its one filter chain's
    authorization filters (in order; the router is implied)."""

    name: str
    address: str
    port: int
    filters: tuple[InboundFilter, ...]
    tls: DownstreamTls | None = None


__all__ = ["JWT_AUTHN_FILTER_NAME", "DownstreamTls", "InboundFilter", "InboundListenerResource"]
