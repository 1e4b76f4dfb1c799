"""The authorization filters of an inbound listener, as data: RBAC and JWT.

Built by the xDS client's decoders (:mod:`meshlib.xds_client.decode_rbac`,
:mod:`meshlib.xds_client.decode_jwt`) from Envoy's
``envoy.extensions.filters.http.rbac.v3.RBAC`` (gRFC A41) and
``envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication``; evaluated by
:mod:`.rbac` and :mod:`.jwt_authn`. Kept here, free of xDS imports, so that the
security package stays below the xDS client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

JWT_AUTHN_FILTER_NAME = "envoy.filters.http.jwt_authn"  # whose metadata RBAC reads


class MatchKind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    CONTAINS = "contains"
    SAFE_REGEX = "safe_regex"
    PRESENT = "present"
    RANGE = "range"


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """``envoy.config.route.v3.HeaderMatcher`` (Envoy's semantics: an absent header
    fails every kind but PRESENT, whatever ``invert`` says)."""

    name: str
    kind: MatchKind
    value: str = ""
    invert: bool = False
    ignore_case: bool = False
    range_start: int = 0
    range_end: int = 0
    present: bool = True


@dataclass(frozen=True, slots=True)
class StringMatch:
    """``envoy.type.matcher.v3.StringMatcher``: ``kind`` EXACT, PREFIX, SUFFIX,
    CONTAINS or SAFE_REGEX (RE2, full match)."""

    kind: MatchKind
    value: str
    ignore_case: bool = False


class ValueKind(enum.Enum):
    PRESENT = "present"
    STRING = "string"
    BOOL = "bool"
    NULL = "null"
    LIST_ONE_OF = "list_one_of"  # a list holding one value that matches ``inner``


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """``envoy.type.matcher.v3.ValueMatcher`` (the kinds meshlib evaluates)."""

    kind: ValueKind
    string: StringMatch | None = None
    boolean: bool = False
    inner: ValueMatch | None = None


@dataclass(frozen=True, slots=True)
class MetadataMatch:
    """``envoy.type.matcher.v3.MetadataMatcher``: the value at ``path`` of ``filter``'s
    dynamic metadata (meshlib has one source: the JWT filter's verified payloads)."""

    filter: str
    path: tuple[str, ...]
    value: ValueMatch
    invert: bool = False


class RuleKind(enum.Enum):
    """What one node of a Permission or Principal tree tests."""

    ANY = "any"
    AND = "and"
    OR = "or"
    NOT = "not"
    HEADER = "header"
    URL_PATH = "url_path"
    DESTINATION_IP = "destination_ip"
    DESTINATION_PORT = "destination_port"  # destination_port and destination_port_range
    REQUESTED_SERVER_NAME = "requested_server_name"
    METADATA = "metadata"
    AUTHENTICATED = "authenticated"  # principal_name (None: any TLS peer)
    SOURCE_IP = "source_ip"  # source_ip, direct_remote_ip and remote_ip: the peer address


@dataclass(frozen=True, slots=True)
class RbacRule:
    """One node of an RBAC ``Permission`` or ``Principal``: ``kind`` says which
    field below holds its argument (``rules`` for AND / OR / NOT)."""

    kind: RuleKind
    rules: tuple[RbacRule, ...] = ()
    header: HeaderMatch | None = None
    string: StringMatch | None = None  # url_path, requested_server_name, principal_name
    cidr: str | None = None  # "ADDRESS/PREFIX_LEN"
    port_range: tuple[int, int] = (0, 0)  # [start, end); a single port is (p, p + 1)
    metadata: MetadataMatch | None = None


@dataclass(frozen=True, slots=True)
class RbacPolicy:
    """Matches when any permission and any principal match."""

    permissions: tuple[RbacRule, ...]
    principals: tuple[RbacRule, ...]


class RbacAction(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    LOG = "LOG"


@dataclass(frozen=True, slots=True)
class RbacRules:
    """``envoy.config.rbac.v3.RBAC``: ``policies`` in name order (as Envoy sorts them)."""

    action: RbacAction
    policies: tuple[tuple[str, RbacPolicy], ...]


@dataclass(frozen=True, slots=True)
class RbacConfig:
    """The RBAC HTTP filter: ``rules`` enforced (None: no enforcement), ``shadow``
    evaluated and logged only."""

    rules: RbacRules | None
    shadow: RbacRules | None = None


@dataclass(frozen=True, slots=True)
class JwtHeader:
    name: str
    value_prefix: str = ""


@dataclass(frozen=True, slots=True)
class JwtProvider:
    """One ``JwtProvider``: keys inline (``jwks``, the JWKS JSON text)."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    jwks: str
    from_headers: tuple[JwtHeader, ...] = ()  # none and no params: Authorization: Bearer
    from_params: tuple[str, ...] = ()
    forward: bool = False
    forward_payload_header: str = ""
    payload_in_metadata: str = ""
    clock_skew_s: int = 60


class RequirementKind(enum.Enum):
    PROVIDER = "provider"
    ANY = "requires_any"
    ALL = "requires_all"
    ALLOW_MISSING = "allow_missing"
    ALLOW_MISSING_OR_FAILED = "allow_missing_or_failed"


@dataclass(frozen=True, slots=True)
class JwtRequirement:
    kind: RequirementKind
    provider: str = ""
    audiences: tuple[str, ...] | None = None  # provider_and_audiences: replaces the provider's
    children: tuple[JwtRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class JwtRule:
    """A requirement for requests whose path starts with ``prefix`` (the first rule
    that matches decides; no rule matching: no requirement)."""

    prefix: str
    requirement: JwtRequirement | None


@dataclass(frozen=True, slots=True)
class JwtAuthnConfig:
    providers: tuple[JwtProvider, ...]
    rules: tuple[JwtRule, ...]


AuthzFilterConfig = RbacConfig | JwtAuthnConfig
