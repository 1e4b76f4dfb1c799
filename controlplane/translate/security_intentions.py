"""Consul ServiceIntentions -> DENY RBAC policies, with Consul's precedence.

The intentions that apply to a workload are those whose destination is one of the
services it serves, then those for ``*``. Their sources are taken most precise first
(an exact service before ``*``, an exact namespace before ``*``), and a source only
covers callers no earlier source matched (each carries ``not`` of the earlier ones),
as Consul's own RBAC translation does. Consul's default-allow: an L4 ``deny`` source
denies its callers, ``allow`` lets them through; L7 ``permissions`` are taken in order
and the first match decides (a ``deny`` permission denies only requests no earlier
permission matched); no match falls back to allow. Write ``- name: "*"`` with
``action: deny`` last for default-deny. A source service ``NAME`` in namespace ``NS``
is the identity ``spiffe://TRUST_DOMAIN/ns/NS/sa/NAME``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2

from controlplane.security_model import (
    IntentionAction,
    IntentionHeader,
    IntentionPermission,
    IntentionSource,
    ServiceIntentions,
)


def intention_deny_policies(
    intentions: Sequence[ServiceIntentions], hosts: Sequence[str]
) -> dict[str, rbac_pb2.Policy]:
    """DENY policies (by name) for a workload serving ``hosts``."""
    chosen = [i for i in intentions if i.destination in hosts]
    chosen += [i for i in intentions if i.destination == "*"]
    ordered = [(entry, src) for entry in chosen for src in _by_precedence(entry.sources)]
    policies: dict[str, rbac_pb2.Policy] = {}
    earlier: list[rbac_pb2.Principal] = []
    for entry, src in ordered:
        caller = _caller(src)
        principal = _and_ids([caller, _not_any(earlier)]) if earlier else caller
        earlier.append(caller)
        prefix = f"intentions[{entry.destination}]-source[{src.namespace}/{src.name}]"
        if src.action is IntentionAction.DENY:
            policies[prefix] = rbac_pb2.Policy(
                permissions=[rbac_pb2.Permission(any=True)], principals=[principal]
            )
        seen: list[rbac_pb2.Permission] = []
        for index, permission in enumerate(src.permissions):
            match = _permission(permission)
            if permission.action is IntentionAction.DENY:
                rule = match
                if seen:
                    rule = rbac_pb2.Permission(
                        and_rules=rbac_pb2.Permission.Set(
                            rules=[
                                match,
                                rbac_pb2.Permission(
                                    not_rule=rbac_pb2.Permission(
                                        or_rules=rbac_pb2.Permission.Set(rules=list(seen))
                                    )
                                ),
                            ]
                        )
                    )
                policies[f"{prefix}-permission[{index}]"] = rbac_pb2.Policy(
                    permissions=[rule], principals=[principal]
                )
            seen.append(match)
    return policies


def _by_precedence(sources: Sequence[IntentionSource]) -> list[IntentionSource]:
    return sorted(sources, key=lambda s: (s.name == "*", s.namespace == "*"))


def _caller(src: IntentionSource) -> rbac_pb2.Principal:
    if src.name == "*" and src.namespace == "*":
        return rbac_pb2.Principal(any=True)
    namespace = "[^/]+" if src.namespace == "*" else re.escape(src.namespace)
    account = "[^/]+" if src.name == "*" else re.escape(src.name)
    matcher = string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(regex=f"spiffe://[^/]+/ns/{namespace}/sa/{account}")
    )
    return rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher)
    )


def _not_any(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if len(principals) == 1:
        return rbac_pb2.Principal(not_id=principals[0])
    return rbac_pb2.Principal(
        not_id=rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=list(principals)))
    )


def _and_ids(principals: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=principals))


def _permission(permission: IntentionPermission) -> rbac_pb2.Permission:
    parts: list[rbac_pb2.Permission] = []
    if permission.path_kind:
        matcher = _string(permission.path_kind, permission.path)
        parts.append(rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=matcher)))
    if permission.methods:
        methods = [
            rbac_pb2.Permission(
                header=rc.HeaderMatcher(
                    name=":method", string_match=string_pb2.StringMatcher(exact=method)
                )
            )
            for method in permission.methods
        ]
        parts.append(
            methods[0]
            if len(methods) == 1
            else rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=methods))
        )
    parts.extend(rbac_pb2.Permission(header=_header(h)) for h in permission.headers)
    if len(parts) == 1:
        return parts[0]
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=parts))


def _string(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    if kind == "prefix":
        return string_pb2.StringMatcher(prefix=value)
    if kind == "suffix":
        return string_pb2.StringMatcher(suffix=value)
    return string_pb2.StringMatcher(exact=value)


def _header(header: IntentionHeader) -> rc.HeaderMatcher:
    if header.kind == "present":
        return rc.HeaderMatcher(name=header.name, present_match=True, invert_match=header.invert)
    return rc.HeaderMatcher(
        name=header.name,
        string_match=_string(header.kind, header.value),
        invert_match=header.invert,
    )
