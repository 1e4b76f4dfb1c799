"""xDS RBAC, evaluated in-process with Envoy's and gRFC A41's semantics.

An :class:`RbacEngine` is compiled once from a decoded RBAC filter
(:class:`~meshlib.security.authz_model.RbacConfig`) and answers per request:

- action ALLOW: allowed when some policy matches; DENY: denied when some policy
  matches; LOG (Istio's AUDIT): never denies, the match is reported for logging;
- a policy matches when any of its permissions and any of its principals match;
- ``shadow_rules`` are evaluated and reported, never enforced;
- a filter without ``rules`` enforces nothing.

What each leaf reads of the request (:class:`RequestFacts`): ``header`` the request
headers (``:method``, ``:path``, ``:authority`` included, the caller fills
``:authority`` from ``host`` when absent (A41); several values joined by ``","``);
``url_path`` the path without its query;
``destination_ip`` / ``destination_port`` the server's side of the connection;
``requested_server_name`` the TLS SNI ("" without); ``authenticated.principal_name``
the peer certificate's URI SANs, else DNS SANs, else its subject, "" without a
certificate (A41), and an unset ``principal_name`` matches any TLS connection;
``source_ip`` / ``direct_remote_ip`` / ``remote_ip`` the peer address (meshlib trusts
no forwarding header); ``metadata`` the JWT filter's verified payloads.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshlib.security.authz_model import (
    MetadataMatch,
    RbacAction,
    RbacConfig,
    RbacRule,
    RbacRules,
    RuleKind,
    StringMatch,
    ValueKind,
    ValueMatch,
)
from meshlib.security.peer import PeerTls
from meshlib.security.string_match import compile_header, compile_string


def principal_names(tls: PeerTls) -> tuple[str, ...]:
    """A41's order: URI SANs, else DNS SANs, else the subject, else ``""``."""
    return tls.uri_sans or tls.dns_sans or (tls.subject,)


@dataclass(slots=True)
class RequestFacts:
    """One request as RBAC sees it. ``headers`` has lower-case names and holds the
    pseudo-headers; ``tls`` is None on a plaintext connection."""

    headers: Mapping[str, str]
    path: str
    source_ip: str | None = None
    destination_ip: str | None = None
    destination_port: int | None = None
    sni: str = ""
    tls: PeerTls | None = None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RbacVerdict:
    """``allowed``; ``policy`` the (first, by name) matching policy or None;
    ``shadow_policy`` / ``shadow_allowed`` what the shadow rules would have said."""

    allowed: bool
    policy: str | None = None
    action: RbacAction | None = None
    shadow_allowed: bool | None = None
    shadow_policy: str | None = None


Test = Callable[[RequestFacts], bool]


def _string(match: StringMatch, where: str) -> Callable[[str], bool]:
    return compile_string(match, where)


def _network(cidr: str) -> Callable[[str | None], bool]:
    network = ipaddress.ip_network(cidr)

    def contains(address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
        except ValueError:
            return False
        if ip.version != network.version and isinstance(ip, ipaddress.IPv6Address):
            mapped = ip.ipv4_mapped
            return mapped is not None and mapped in network
        return ip in network

    return contains


def _value(match: ValueMatch, where: str) -> Callable[[Any], bool]:
    if match.kind is ValueKind.PRESENT:
        return lambda v: v is not None
    if match.kind is ValueKind.NULL:
        return lambda v: v is None
    if match.kind is ValueKind.BOOL:
        want = match.boolean
        return lambda v: isinstance(v, bool) and v is want
    if match.kind is ValueKind.STRING:
        assert match.string is not None
        text = _string(match.string, where)
        return lambda v: isinstance(v, str) and text(v)
    assert match.inner is not None
    inner = _value(match.inner, where)
    return lambda v: isinstance(v, list) and any(inner(item) for item in v)


def _metadata(match: MetadataMatch, where: str) -> Test:
    test = _value(match.value, where)

    def run(facts: RequestFacts) -> bool:
        node: Any = facts.metadata.get(match.filter)
        for key in match.path:
            node = node.get(key) if isinstance(node, dict) else None
        # A value that is not there matches nothing; ``invert`` flips the result (Envoy).
        return (node is not None and test(node)) != match.invert

    return run


def compile_rule(rule: RbacRule, where: str) -> Test:
    """One Permission or Principal node as a predicate on the request."""
    kind = rule.kind
    if kind is RuleKind.ANY:
        return lambda facts: True
    if kind is RuleKind.AND:
        parts = [compile_rule(r, f"{where}.and[{i}]") for i, r in enumerate(rule.rules)]
        return lambda facts: all(p(facts) for p in parts)
    if kind is RuleKind.OR:
        parts = [compile_rule(r, f"{where}.or[{i}]") for i, r in enumerate(rule.rules)]
        return lambda facts: any(p(facts) for p in parts)
    if kind is RuleKind.NOT:
        inner = compile_rule(rule.rules[0], f"{where}.not")
        return lambda facts: not inner(facts)
    if kind is RuleKind.HEADER:
        assert rule.header is not None
        header = compile_header(rule.header, where)
        return lambda facts: header(facts.headers)
    if kind is RuleKind.URL_PATH:
        assert rule.string is not None
        path = _string(rule.string, where)
        return lambda facts: path(facts.path)
    if kind is RuleKind.REQUESTED_SERVER_NAME:
        assert rule.string is not None
        sni = _string(rule.string, where)
        return lambda facts: sni(facts.sni)
    if kind is RuleKind.DESTINATION_PORT:
        start, end = rule.port_range
        return lambda facts: (
            facts.destination_port is not None and (start <= facts.destination_port < end)
        )
    if kind is RuleKind.DESTINATION_IP:
        assert rule.cidr is not None
        destination = _network(rule.cidr)
        return lambda facts: destination(facts.destination_ip)
    if kind is RuleKind.SOURCE_IP:
        assert rule.cidr is not None
        source = _network(rule.cidr)
        return lambda facts: source(facts.source_ip)
    if kind is RuleKind.METADATA:
        assert rule.metadata is not None
        return _metadata(rule.metadata, where)
    if kind is RuleKind.AUTHENTICATED:
        if rule.string is None:
            return lambda facts: facts.tls is not None
        name = _string(rule.string, where)
        return lambda facts: (
            facts.tls is not None and any(name(n) for n in principal_names(facts.tls))
        )
    raise ValueError(f"{where}: rule kind {kind.value!r} is not evaluated")


def _any_of(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    return lambda facts: any(test(facts) for test in tests)


class _CompiledRules:
    __slots__ = ("action", "policies")

    def __init__(self, rules: RbacRules, where: str) -> None:
        self.action = rules.action
        self.policies: list[tuple[str, Test, Test]] = []
        for name, policy in rules.policies:
            at = f"{where}.policies[{name}]"
            permissions = [compile_rule(r, f"{at}.permissions") for r in policy.permissions]
            principals = [compile_rule(r, f"{at}.principals") for r in policy.principals]
            self.policies.append((name, _any_of(permissions), _any_of(principals)))

    def first_match(self, facts: RequestFacts) -> str | None:
        for name, permitted, principal in self.policies:
            if permitted(facts) and principal(facts):
                return name
        return None

    def allows(self, matched: str | None) -> bool:
        if self.action is RbacAction.ALLOW:
            return matched is not None
        if self.action is RbacAction.DENY:
            return matched is None
        return True  # LOG


class RbacEngine:
    """One RBAC filter, compiled; :meth:`evaluate` per request, never blocking."""

    __slots__ = ("_rules", "_shadow", "name")

    def __init__(self, name: str, config: RbacConfig) -> None:
        self.name = name
        self._rules = _CompiledRules(config.rules, f"{name}.rules") if config.rules else None
        self._shadow = _CompiledRules(config.shadow, f"{name}.shadow") if config.shadow else None

    def evaluate(self, facts: RequestFacts) -> RbacVerdict:
        allowed, policy, action = True, None, None
        if self._rules is not None:
            policy = self._rules.first_match(facts)
            allowed, action = self._rules.allows(policy), self._rules.action
        shadow_allowed = shadow_policy = None
        if self._shadow is not None:
            shadow_policy = self._shadow.first_match(facts)
            shadow_allowed = self._shadow.allows(shadow_policy)
        return RbacVerdict(allowed, policy, action, shadow_allowed, shadow_policy)
