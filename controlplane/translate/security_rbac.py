"""AuthorizationPolicy -> RBAC HTTP filters (Envoy's, and gRFC A41's subset for grpcio).

The policies that apply to a workload are those of its namespace and of the root
namespace whose selector matches its labels. As Istio evaluates them: a DENY filter
first (any matching DENY policy denies), then an ALLOW filter when any ALLOW policy
applies (the request must match one of them; an ALLOW policy without rules matches
nothing, so ``spec: {}`` denies everything), none: allowed. AUDIT policies become a
LOG filter for Envoy sidecars only (it changes no decision; grpcio has no LOG action).
One RBAC policy per rule, named as Istio names them: ``ns[NS]-policy[NAME]-rule[I]``.
Values keep Istio's ``*`` forms: exact, ``prefix*``, ``*suffix``, ``*`` (present).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from controlplane.security_model import (
    AuthorizationPolicy,
    AuthzAction,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    Values,
)
from controlplane.translate.common import pack
from controlplane.translate.security_jwt import NO_REQUEST_PRINCIPAL, claim, request_principal
from controlplane.translate.security_peer import selects
from controlplane.translate.security_settings import PolicySettings

RBAC_FILTER_NAMES = {
    AuthzAction.DENY: "envoy.filters.http.rbac.deny",
    AuthzAction.ALLOW: "envoy.filters.http.rbac.allow",
    AuthzAction.AUDIT: "envoy.filters.http.rbac.audit",
}
_ACTIONS = {
    AuthzAction.DENY: rbac_pb2.RBAC.DENY,
    AuthzAction.ALLOW: rbac_pb2.RBAC.ALLOW,
    AuthzAction.AUDIT: rbac_pb2.RBAC.LOG,
}
_HEADER_KEY = re.compile(r"^request\.headers\[([^\]]+)\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims\[([^\]]+)\]$")


def applicable_policies(
    policies: Sequence[AuthorizationPolicy],
    settings: PolicySettings,
    namespace: str,
    labels: Mapping[str, str],
) -> list[AuthorizationPolicy]:
    """The workload's policies, in load order."""
    return [
        p
        for p in policies
        if p.namespace in (namespace, settings.root_namespace) and selects(p.selector, labels)
    ]


def rbac_filters(
    policies: Sequence[AuthorizationPolicy],
    *,
    audit: bool,
    jwt: bool = False,
    extra_deny: Mapping[str, rbac_pb2.Policy] | None = None,
) -> list[hcm_pb2.HttpFilter]:
    """DENY, ALLOW (and, with ``audit``, AUDIT) filters for the applicable ``policies``;
    ``extra_deny`` (ServiceIntentions) joins the DENY filter. ``jwt``: the listener has
    the JWT filter (request principals and claims read its metadata; else they never
    match)."""
    filters: list[hcm_pb2.HttpFilter] = []
    for action in (AuthzAction.DENY, AuthzAction.ALLOW, AuthzAction.AUDIT):
        chosen = [p for p in policies if p.action is action]
        extra = extra_deny if action is AuthzAction.DENY and extra_deny else {}
        if not (chosen or extra) or (action is AuthzAction.AUDIT and not audit):
            continue
        config = rbac_filter_pb2.RBAC()
        config.rules.SetInParent()  # present even without policies: ALLOW then denies all
        config.rules.action = _ACTIONS[action]
        for policy in chosen:
            for index, rule in enumerate(policy.rules):
                name = f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"
                config.rules.policies[name].CopyFrom(_policy(rule, jwt))
        for name, policy in extra.items():
            config.rules.policies[name].CopyFrom(policy)
        filters.append(
            hcm_pb2.HttpFilter(name=RBAC_FILTER_NAMES[action], typed_config=pack(config))
        )
    return filters


def _policy(rule: AuthzRule, jwt: bool) -> rbac_pb2.Policy:
    permissions = [_any_permission([_operation(op) for op in rule.operations])]
    principals = [_any_principal([_source(src, jwt) for src in rule.sources])]
    for condition in rule.conditions:
        permission, principal = _condition(condition, jwt)
        if permission is not None:
            permissions.append(permission)
        if principal is not None:
            principals.append(principal)
    return rbac_pb2.Policy(
        permissions=[_all_permissions(permissions)], principals=[_all_principals(principals)]
    )


# --- matchers ----------------------------------------------------------------


def string_matcher(value: str, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    """Istio's forms: ``*`` any non-empty, ``prefix*``, ``*suffix``, else exact."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=value, ignore_case=ignore_case)


def _principal_name(value: str) -> rbac_pb2.Principal:
    """Istio writes principals without ``spiffe://``; certificates carry it."""
    if value == "*":
        matcher = string_matcher("*")
    elif value.startswith("*"):
        matcher = string_pb2.StringMatcher(suffix=value[1:])
    else:
        matcher = string_matcher("spiffe://" + value)
    return rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher)
    )


def _namespace(value: str) -> rbac_pb2.Principal:
    """A namespace is the ``/ns/NS/`` part of the caller's SPIFFE ID."""
    part = re.escape(value.strip("*"))
    pattern = ("[^/]*" if value.startswith("*") else "") + part
    pattern += "[^/]*" if value.endswith("*") else ""
    matcher = string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(regex=f"spiffe://[^/]+/ns/{pattern}/sa/[^/]+")
    )
    return rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher)
    )


def _cidr(value: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )


def _header(name: str, value: str) -> rc.HeaderMatcher:
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(value))


def _path(value: str) -> path_pb2.PathMatcher:
    return path_pb2.PathMatcher(path=string_matcher(value))


# --- from / to / when ----------------------------------------------------------


def _request_principal(jwt: bool) -> Callable[[str], rbac_pb2.Principal]:
    return request_principal if jwt else (lambda _: NO_REQUEST_PRINCIPAL)


def _source(source: AuthzSource, jwt: bool) -> rbac_pb2.Principal:
    parts = [
        *_principal_field(source.principals, _principal_name),
        *_principal_field(source.request_principals, _request_principal(jwt)),
        *_principal_field(source.namespaces, _namespace),
        *_principal_field(
            source.ip_blocks, lambda v: rbac_pb2.Principal(direct_remote_ip=_cidr(v))
        ),
        *_principal_field(
            source.remote_ip_blocks, lambda v: rbac_pb2.Principal(remote_ip=_cidr(v))
        ),
    ]
    return _all_principals(parts)


def _operation(operation: AuthzOperation) -> rbac_pb2.Permission:
    parts = [
        *_permission_field(
            operation.hosts,
            lambda v: rbac_pb2.Permission(
                header=rc.HeaderMatcher(
                    name=":authority", string_match=string_matcher(v, ignore_case=True)
                )
            ),
        ),
        *_permission_field(operation.ports, lambda v: rbac_pb2.Permission(destination_port=int(v))),
        *_permission_field(
            operation.methods, lambda v: rbac_pb2.Permission(header=_header(":method", v))
        ),
        *_permission_field(operation.paths, lambda v: rbac_pb2.Permission(url_path=_path(v))),
    ]
    return _all_permissions(parts)


def _condition(
    condition: AuthzCondition, jwt: bool
) -> tuple[rbac_pb2.Permission | None, rbac_pb2.Principal | None]:
    key, values = condition.key, condition.values
    claim_key = _CLAIM_KEY.match(key)
    if claim_key is not None:
        name = claim_key.group(1)
        build: Callable[[str], rbac_pb2.Principal] = (
            (lambda v: claim(name, string_matcher(v))) if jwt else (lambda _: NO_REQUEST_PRINCIPAL)
        )
        return None, _one_principal(values, build)
    header = _HEADER_KEY.match(key)
    if header is not None:
        name = header.group(1).lower()
        return _one_permission(values, lambda v: rbac_pb2.Permission(header=_header(name, v))), None
    permission_keys: dict[str, Callable[[str], rbac_pb2.Permission]] = {
        "destination.ip": lambda v: rbac_pb2.Permission(destination_ip=_cidr(v)),
        "destination.port": lambda v: rbac_pb2.Permission(destination_port=int(v)),
        "connection.sni": lambda v: rbac_pb2.Permission(requested_server_name=string_matcher(v)),
    }
    if key in permission_keys:
        return _one_permission(values, permission_keys[key]), None
    principal_keys: dict[str, Callable[[str], rbac_pb2.Principal]] = {
        "source.ip": lambda v: rbac_pb2.Principal(direct_remote_ip=_cidr(v)),
        "remote.ip": lambda v: rbac_pb2.Principal(remote_ip=_cidr(v)),
        "source.namespace": _namespace,
        "source.principal": _principal_name,
        "request.auth.principal": _request_principal(jwt),
    }
    return None, _one_principal(values, principal_keys[key])  # the parser checked the key


# --- combinators ---------------------------------------------------------------


def _permission_field(
    values: Values, build: Callable[[str], rbac_pb2.Permission]
) -> list[rbac_pb2.Permission]:
    return [] if values.empty else [_one_permission(values, build)]


def _one_permission(
    values: Values, build: Callable[[str], rbac_pb2.Permission]
) -> rbac_pb2.Permission:
    """Any of ``values`` and none of ``not_values``."""
    parts: list[rbac_pb2.Permission] = []
    if values.values:
        parts.append(_any_permission([build(v) for v in values.values]))
    if values.not_values:
        parts.append(
            rbac_pb2.Permission(not_rule=_any_permission([build(v) for v in values.not_values]))
        )
    return _all_permissions(parts)


def _principal_field(
    values: Values, build: Callable[[str], rbac_pb2.Principal]
) -> list[rbac_pb2.Principal]:
    return [] if values.empty else [_one_principal(values, build)]


def _one_principal(
    values: Values, build: Callable[[str], rbac_pb2.Principal]
) -> rbac_pb2.Principal:
    parts: list[rbac_pb2.Principal] = []
    if values.values:
        parts.append(_any_principal([build(v) for v in values.values]))
    if values.not_values:
        parts.append(
            rbac_pb2.Principal(not_id=_any_principal([build(v) for v in values.not_values]))
        )
    return _all_principals(parts)


def _any_permission(parts: list[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if not parts:
        return rbac_pb2.Permission(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=parts))


def _all_permissions(parts: list[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    parts = [p for p in parts if not p.any]
    if not parts:
        return rbac_pb2.Permission(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=parts))


def _any_principal(parts: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not parts:
        return rbac_pb2.Principal(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=parts))


def _all_principals(parts: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    parts = [p for p in parts if not p.any]
    if not parts:
        return rbac_pb2.Principal(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=parts))
