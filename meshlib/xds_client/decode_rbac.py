"""RBAC HTTP filter config (``envoy.extensions.filters.http.rbac.v3.RBAC``) -> RbacConfig.

Every field that decides a request is either decoded or refused by name: CEL
conditions, the ``matcher`` trees, ``uri_template``, ``filter_state``,
``sourced_metadata`` and ``custom`` principals are NACKed (gRFC A41 NACKs CEL too),
never skipped. Header matchers on ``grpc-`` headers or ``:scheme`` are refused, as A41
says. Policies are kept in name order: Envoy keeps them in a sorted map, and the first
matching one is the one logged.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2

from meshlib.security.authz_model import (
    HeaderMatch,
    MatchKind,
    MetadataMatch,
    RbacAction,
    RbacConfig,
    RbacPolicy,
    RbacRule,
    RbacRules,
    RuleKind,
    StringMatch,
    ValueKind,
    ValueMatch,
)
from meshlib.xds_client._decode_util import DecodeContext, reject_if_set, unpack_any
from meshlib.xds_client.decode_matchers import header_matcher, string_matcher

_ACTIONS = {0: RbacAction.ALLOW, 1: RbacAction.DENY, 2: RbacAction.LOG}
_MAX_DEPTH = 64


def decode_rbac_filter(ctx: DecodeContext, typed_config: Any, where: str) -> RbacConfig:
    config = unpack_any(ctx, typed_config, rbac_filter_pb2.RBAC, where)
    reject_if_set(ctx, config, ("matcher", "shadow_matcher"), where)
    rules = _rules(ctx, config.rules, f"{where}.rules") if config.HasField("rules") else None
    shadow = (
        _rules(ctx, config.shadow_rules, f"{where}.shadow_rules")
        if config.HasField("shadow_rules")
        else None
    )
    return RbacConfig(rules=rules, shadow=shadow)


def _rules(ctx: DecodeContext, rules: Any, where: str) -> RbacRules:
    action = _ACTIONS.get(rules.action)
    if action is None:
        raise ctx.error(f"{where}.action: {rules.action} is not ALLOW, DENY or LOG")
    policies = []
    for name in sorted(rules.policies):
        at = f"{where}.policies[{name}]"
        policy = rules.policies[name]
        reject_if_set(ctx, policy, ("condition", "checked_condition", "cel_config"), at)
        permissions = tuple(
            _permission(ctx, p, f"{at}.permissions[{i}]", 0)
            for i, p in enumerate(policy.permissions)
        )
        principals = tuple(
            _principal(ctx, p, f"{at}.principals[{i}]", 0) for i, p in enumerate(policy.principals)
        )
        if not permissions:
            raise ctx.error(f"{at}.permissions: at least one required")
        if not principals:
            raise ctx.error(f"{at}.principals: at least one required")
        policies.append((name, RbacPolicy(permissions, principals)))
    return RbacRules(action=action, policies=tuple(policies))


def _depth(ctx: DecodeContext, depth: int, where: str) -> None:
    if depth > _MAX_DEPTH:
        raise ctx.error(f"{where}: rules nested deeper than {_MAX_DEPTH}")


def _permission(ctx: DecodeContext, msg: Any, where: str, depth: int) -> RbacRule:
    _depth(ctx, depth, where)
    rule = msg.WhichOneof("rule")
    at = f"{where}.{rule}"
    if rule == "any":
        if not msg.any:
            raise ctx.error(f"{at}: must be true")
        return RbacRule(RuleKind.ANY)
    if rule in ("and_rules", "or_rules"):
        kind = RuleKind.AND if rule == "and_rules" else RuleKind.OR
        children = getattr(msg, rule).rules
        return RbacRule(
            kind,
            rules=tuple(
                _permission(ctx, c, f"{at}.rules[{i}]", depth + 1) for i, c in enumerate(children)
            ),
        )
    if rule == "not_rule":
        return RbacRule(RuleKind.NOT, rules=(_permission(ctx, msg.not_rule, at, depth + 1),))
    if rule == "header":
        return RbacRule(RuleKind.HEADER, header=_header(ctx, msg.header, at))
    if rule == "url_path":
        return RbacRule(RuleKind.URL_PATH, string=_path(ctx, msg.url_path, at))
    if rule == "destination_ip":
        return RbacRule(RuleKind.DESTINATION_IP, cidr=_cidr(ctx, msg.destination_ip, at))
    if rule == "destination_port":
        if not 0 <= msg.destination_port <= 65535:
            raise ctx.error(f"{at}: {msg.destination_port} is not a port")
        port = msg.destination_port
        return RbacRule(RuleKind.DESTINATION_PORT, port_range=(port, port + 1))
    if rule == "destination_port_range":
        start, end = msg.destination_port_range.start, msg.destination_port_range.end
        if end < start:
            raise ctx.error(f"{at}: end {end} < start {start}")
        return RbacRule(RuleKind.DESTINATION_PORT, port_range=(start, end))
    if rule == "requested_server_name":
        return RbacRule(
            RuleKind.REQUESTED_SERVER_NAME, string=_string(ctx, msg.requested_server_name, at)
        )
    if rule == "metadata":
        return RbacRule(RuleKind.METADATA, metadata=_metadata(ctx, msg.metadata, at))
    if rule is None:
        raise ctx.error(f"{where}: a rule is required")
    raise ctx.error(f"{at}: not supported")


def _principal(ctx: DecodeContext, msg: Any, where: str, depth: int) -> RbacRule:
    _depth(ctx, depth, where)
    ident = msg.WhichOneof("identifier")
    at = f"{where}.{ident}"
    if ident == "any":
        if not msg.any:
            raise ctx.error(f"{at}: must be true")
        return RbacRule(RuleKind.ANY)
    if ident in ("and_ids", "or_ids"):
        kind = RuleKind.AND if ident == "and_ids" else RuleKind.OR
        children = getattr(msg, ident).ids
        return RbacRule(
            kind,
            rules=tuple(
                _principal(ctx, c, f"{at}.ids[{i}]", depth + 1) for i, c in enumerate(children)
            ),
        )
    if ident == "not_id":
        return RbacRule(RuleKind.NOT, rules=(_principal(ctx, msg.not_id, at, depth + 1),))
    if ident == "authenticated":
        auth = msg.authenticated
        name = (
            _string(ctx, auth.principal_name, f"{at}.principal_name")
            if auth.HasField("principal_name")
            else None
        )
        return RbacRule(RuleKind.AUTHENTICATED, string=name)
    if ident in ("source_ip", "direct_remote_ip", "remote_ip"):
        return RbacRule(RuleKind.SOURCE_IP, cidr=_cidr(ctx, getattr(msg, ident), at))
    if ident == "header":
        return RbacRule(RuleKind.HEADER, header=_header(ctx, msg.header, at))
    if ident == "url_path":
        return RbacRule(RuleKind.URL_PATH, string=_path(ctx, msg.url_path, at))
    if ident == "metadata":
        return RbacRule(RuleKind.METADATA, metadata=_metadata(ctx, msg.metadata, at))
    if ident is None:
        raise ctx.error(f"{where}: an identifier is required")
    raise ctx.error(f"{at}: not supported")


# --- leaves ------------------------------------------------------------------------


def _string(ctx: DecodeContext, msg: Any, where: str) -> StringMatch:
    kind, value = string_matcher(ctx, msg, where)
    return StringMatch(MatchKind(kind.value), value, msg.ignore_case)


def _header(ctx: DecodeContext, msg: Any, where: str) -> HeaderMatch:
    m = header_matcher(ctx, msg, where)
    name = m.name.lower()
    if name.startswith("grpc-") or name == ":scheme":
        raise ctx.error(f"{where}.name: {m.name!r} cannot be matched (gRFC A41)")
    if msg.treat_missing_header_as_empty:
        raise ctx.error(f"{where}.treat_missing_header_as_empty: not supported")
    return HeaderMatch(
        name=name,
        kind=MatchKind(m.kind.value),
        value=m.value,
        invert=m.invert,
        ignore_case=m.ignore_case,
        range_start=m.range_start,
        range_end=m.range_end,
        present=m.present,
    )


def _path(ctx: DecodeContext, msg: Any, where: str) -> StringMatch:
    if msg.WhichOneof("rule") != "path":
        raise ctx.error(f"{where}.path: required")
    return _string(ctx, msg.path, f"{where}.path")


def _cidr(ctx: DecodeContext, msg: Any, where: str) -> str:
    prefix_len = msg.prefix_len.value if msg.HasField("prefix_len") else None
    try:
        address = ipaddress.ip_address(msg.address_prefix)
        length = address.max_prefixlen if prefix_len is None else prefix_len
        network = ipaddress.ip_network(f"{address}/{length}", strict=False)
    except ValueError as exc:
        raise ctx.error(f"{where}: not a CIDR range: {exc}") from exc
    return str(network)


def _metadata(ctx: DecodeContext, msg: Any, where: str) -> MetadataMatch:
    if not msg.filter:
        raise ctx.error(f"{where}.filter: required")
    if not msg.path:
        raise ctx.error(f"{where}.path: at least one segment required")
    path = []
    for i, segment in enumerate(msg.path):
        if not segment.key:
            raise ctx.error(f"{where}.path[{i}].key: required")
        path.append(segment.key)
    return MetadataMatch(
        filter=msg.filter,
        path=tuple(path),
        value=_value(ctx, msg.value, f"{where}.value", 0),
        invert=msg.invert,
    )


def _value(ctx: DecodeContext, msg: Any, where: str, depth: int) -> ValueMatch:
    _depth(ctx, depth, where)
    kind = msg.WhichOneof("match_pattern")
    if kind == "present_match":
        if not msg.present_match:
            raise ctx.error(f"{where}.present_match: false is not supported")
        return ValueMatch(ValueKind.PRESENT)
    if kind == "string_match":
        return ValueMatch(
            ValueKind.STRING, string=_string(ctx, msg.string_match, f"{where}.string_match")
        )
    if kind == "bool_match":
        return ValueMatch(ValueKind.BOOL, boolean=msg.bool_match)
    if kind == "null_match":
        return ValueMatch(ValueKind.NULL)
    if kind == "list_match":
        if msg.list_match.WhichOneof("match_pattern") != "one_of":
            raise ctx.error(f"{where}.list_match.one_of: required")
        inner = _value(ctx, msg.list_match.one_of, f"{where}.list_match.one_of", depth + 1)
        return ValueMatch(ValueKind.LIST_ONE_OF, inner=inner)
    if kind is None:
        raise ctx.error(f"{where}: a match pattern is required")
    raise ctx.error(f"{where}.{kind}: not supported")
