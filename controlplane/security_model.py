"""Validated security config: PeerAuthentication, AuthorizationPolicy and a
DestinationRule's client TLS settings.

The contract between the config parser (which builds these) and translate
(which turns them into ``UpstreamTlsContext``, ``DownstreamTlsContext`` and
RBAC filters). Field names and meanings follow Istio's security API
(security.istio.io/v1) and ``ClientTLSSettings`` of networking.istio.io.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.model import Source


def _no_ports() -> Mapping[int, MtlsMode]:
    return MappingProxyType({})


class MtlsMode(enum.Enum):
    """PeerAuthentication ``mtls.mode``; UNSET inherits from the parent scope."""

    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    """Which mTLS mode a workload's server side accepts (Istio's scope rules: a
    selector policy beats the namespace policy, which beats the root namespace's)."""

    name: str
    namespace: str
    selector: Mapping[str, str] | None  # None: namespace (or mesh) wide
    mode: MtlsMode = MtlsMode.UNSET
    port_modes: Mapping[int, MtlsMode] = field(default_factory=_no_ports)  # workload port
    source: Source | None = None


class TlsMode(enum.Enum):
    """DestinationRule ``trafficPolicy.tls.mode``."""

    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


@dataclass(frozen=True, slots=True)
class ClientTLSSettings:
    """How a client connects to a destination (file paths for SIMPLE / MUTUAL)."""

    mode: TlsMode
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    sni: str = ""
    subject_alt_names: tuple[str, ...] = ()


class AuthzAction(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"


@dataclass(frozen=True, slots=True)
class Values:
    """One field and its ``not`` form, as written (Istio's ``*`` forms kept)."""

    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.values and not self.not_values


NO_VALUES = Values()


@dataclass(frozen=True, slots=True)
class AuthzSource:
    """``rule.from[].source``: who is calling (all fields must match)."""

    principals: Values = NO_VALUES
    request_principals: Values = NO_VALUES  # ISSUER/SUBJECT of a validated JWT
    namespaces: Values = NO_VALUES
    ip_blocks: Values = NO_VALUES
    remote_ip_blocks: Values = NO_VALUES


@dataclass(frozen=True, slots=True)
class AuthzOperation:
    """``rule.to[].operation``: what is called (all fields must match)."""

    hosts: Values = NO_VALUES
    ports: Values = NO_VALUES
    methods: Values = NO_VALUES
    paths: Values = NO_VALUES


@dataclass(frozen=True, slots=True)
class AuthzCondition:
    """``rule.when[]``: ``key`` (e.g. ``request.headers[x-user]``) with values / notValues."""

    key: str
    values: Values = NO_VALUES


@dataclass(frozen=True, slots=True)
class AuthzRule:
    """One rule: any ``from`` AND any ``to`` AND every ``when`` (empty parts match all)."""

    sources: tuple[AuthzSource, ...] = ()
    operations: tuple[AuthzOperation, ...] = ()
    conditions: tuple[AuthzCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    """An AuthorizationPolicy; ``rules`` empty matches nothing (an ALLOW then denies all)."""

    name: str
    namespace: str
    selector: Mapping[str, str] | None
    action: AuthzAction = AuthzAction.ALLOW
    rules: tuple[AuthzRule, ...] = ()
    source: Source | None = None

    @property
    def origin(self) -> str:
        where = f" ({self.source})" if self.source is not None else ""
        return f"AuthorizationPolicy {self.namespace}/{self.name}{where}"


class IntentionAction(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class IntentionHeader:
    """One ``http.header[]`` matcher; ``kind`` exact, prefix, suffix, regex or present."""

    name: str
    kind: str
    value: str = ""
    invert: bool = False


@dataclass(frozen=True, slots=True)
class IntentionPermission:
    """An L7 permission: all of its HTTP conditions must hold."""

    action: IntentionAction
    path_kind: str = ""  # "exact", "prefix", "regex"; "" any path
    path: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[IntentionHeader, ...] = ()


@dataclass(frozen=True, slots=True)
class IntentionSource:
    """A caller: ``name`` a service (its service account), ``*`` any; its namespace."""

    name: str
    namespace: str
    action: IntentionAction | None = None  # L4; else ``permissions`` (first match wins)
    permissions: tuple[IntentionPermission, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceIntentions:
    """Consul's ServiceIntentions for one destination service (``*``: every service)."""

    name: str
    namespace: str
    destination: str
    sources: tuple[IntentionSource, ...] = ()
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class JwtHeader:
    """``fromHeaders[]``: where a token is read, with the prefix before it."""

    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class JwtRule:
    """One ``jwtRules[]`` entry: a trusted issuer and how its tokens are found and passed on."""

    issuer: str
    jwks: str  # the JSON Web Key Set, inline ("" with jwks_uri until the control plane has it)
    audiences: tuple[str, ...] = ()
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    jwks_uri: str = ""  # where the control plane fetches the key set (controlplane.jwks_keeper)


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    """Which JWTs a workload accepts: a bad token is refused (401), none is let through
    without a request principal (AuthorizationPolicy ``requestPrincipals`` decides)."""

    name: str
    namespace: str
    selector: Mapping[str, str] | None
    rules: tuple[JwtRule, ...] = ()
    source: Source | None = None
