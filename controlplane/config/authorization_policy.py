"""AuthorizationPolicy (security.istio.io/v1): who may call what on selected workloads.

``selector``, ``action`` ALLOW (default) / DENY / AUDIT (CUSTOM is refused: it needs an
external authorizer), ``rules`` with ``from.source``, ``to.operation`` and ``when``, as
Istio's reference writes them. Values keep Istio's ``*`` forms (exact, ``prefix*``,
``*suffix``, ``*``); translate reads them. ``spec: {}`` is valid (an ALLOW matching
nothing: deny all), ``rules: [{}]`` matches everything.
"""

from __future__ import annotations

import ipaddress
import re

from controlplane.config.fields import Check, Fields, as_string
from controlplane.config.resource import Header
from controlplane.config.workload_selector import parse_selector
from controlplane.security_model import (
    AuthorizationPolicy,
    AuthzAction,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    Values,
)

SPEC_FIELDS = ("selector", "action", "rules")
SPEC_NOT_YET = ("targetRef", "targetRefs")
SPEC_REFUSED = {"provider": "CUSTOM authorization (provider) is not supported"}
ACTIONS = tuple(action.value for action in AuthzAction)
RULE_FIELDS = ("from", "to", "when")
SOURCE_FIELDS = (
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
)
SOURCE_NOT_YET = ("serviceAccounts", "notServiceAccounts")
OPERATION_FIELDS = (
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
)
CONDITION_KEYS = (
    "request.headers[NAME]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "request.auth.principal",
    "request.auth.claims[NAME]",
)
_HEADER_KEY = re.compile(r"^request\.headers\[([^\]]+)\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims\[([^\]\[.]+)\]$")


def parse_authorization_policy(header: Header, spec: Fields) -> AuthorizationPolicy | None:
    """Validate an AuthorizationPolicy spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "AuthorizationPolicy spec", SPEC_REFUSED)
    selector = parse_selector(spec)
    text = None
    if spec.data.get("action") == "CUSTOM":
        ctx.error(spec.at("action"), "action CUSTOM is not supported (no external authorizer)")
    else:
        text = spec.choice("action", supported=ACTIONS, what="action")
    rules = [_rule(Fields.of(ctx, path, value)) for path, value in spec.items("rules") or ()]
    if ctx.count != before:
        return None
    return AuthorizationPolicy(
        name=header.name,
        namespace=header.namespace,
        selector=selector,
        action=AuthzAction(text) if text is not None else AuthzAction.ALLOW,
        rules=tuple(rule for rule in rules if rule is not None),
        source=header.source,
    )


def _rule(fields: Fields | None) -> AuthzRule | None:
    if fields is None:
        return None
    fields.reject_unknown(RULE_FIELDS, what="a rule")
    sources = [_source(f) for f in _wrapped(fields, "from", "source")]
    operations = [_operation(f) for f in _wrapped(fields, "to", "operation")]
    conditions = [_condition(f) for f in _listed(fields, "when")]
    return AuthzRule(
        sources=tuple(s for s in sources if s is not None),
        operations=tuple(o for o in operations if o is not None),
        conditions=tuple(c for c in conditions if c is not None),
    )


def _listed(fields: Fields, key: str) -> list[Fields]:
    found: list[Fields] = []
    for path, value in fields.items(key, non_empty=True) or ():
        entry = Fields.of(fields.ctx, path, value)
        if entry is not None:
            found.append(entry)
    return found


def _wrapped(fields: Fields, key: str, inner: str) -> list[Fields]:
    """``from: [{source: {...}}]`` / ``to: [{operation: {...}}]``: the inner mappings."""
    found: list[Fields] = []
    for entry in _listed(fields, key):
        entry.reject_unknown((inner,), what=f"a {key} entry")
        body = entry.mapping(inner, required=True)
        if body is not None:
            found.append(body)
    return found


def _source(fields: Fields) -> AuthzSource | None:
    before = fields.ctx.count
    fields.reject_unknown(SOURCE_FIELDS, SOURCE_NOT_YET, "source")
    source = AuthzSource(
        principals=_values(fields, "principals", _principal),
        request_principals=_values(fields, "requestPrincipals", _request_principal),
        namespaces=_values(fields, "namespaces", _wildcard),
        ip_blocks=_values(fields, "ipBlocks", _cidr),
        remote_ip_blocks=_values(fields, "remoteIpBlocks", _cidr),
    )
    _non_empty(fields, SOURCE_FIELDS)
    return source if fields.ctx.count == before else None


def _operation(fields: Fields) -> AuthzOperation | None:
    before = fields.ctx.count
    fields.reject_unknown(OPERATION_FIELDS, what="operation")
    operation = AuthzOperation(
        hosts=_values(fields, "hosts", _wildcard),
        ports=_values(fields, "ports", _port),
        methods=_values(fields, "methods", _wildcard),
        paths=_values(fields, "paths", _path),
    )
    _non_empty(fields, OPERATION_FIELDS)
    return operation if fields.ctx.count == before else None


def _condition(fields: Fields) -> AuthzCondition | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(("key", "values", "notValues"), what="a condition")
    key = fields.string("key", required=True, check=_condition_key)
    check: Check = _wildcard
    if key in ("source.ip", "remote.ip", "destination.ip"):
        check = _cidr
    elif key == "destination.port":
        check = _port
    elif key == "request.auth.principal":
        check = _request_principal
    elif key == "source.principal":
        check = _principal
    values = Values(_strings(fields, "values", check), _strings(fields, "notValues", check))
    if values.empty and key is not None:
        ctx.error(fields.path, "must set values or notValues")
    if ctx.count != before or key is None:
        return None
    return AuthzCondition(key=key, values=values)


def _non_empty(fields: Fields, known: tuple[str, ...]) -> None:
    if not any(fields.present(key) for key in known):
        fields.ctx.error(fields.path, f"must set at least one of {', '.join(known)}")


def _values(fields: Fields, key: str, check: Check) -> Values:
    not_key = "not" + key[0].upper() + key[1:]
    return Values(_strings(fields, key, check), _strings(fields, not_key, check))


def _strings(fields: Fields, key: str, check: Check) -> tuple[str, ...]:
    found: list[str] = []
    for path, value in fields.items(key, non_empty=True) or ():
        text = as_string(fields.ctx, path, value, check)
        if text is not None:
            found.append(text)
    return tuple(found)


def _condition_key(key: str) -> str | None:
    if key in CONDITION_KEYS or _HEADER_KEY.match(key) or _CLAIM_KEY.match(key):
        return None
    if key.startswith("request.auth."):
        return f"condition key {key!r} is not supported yet (use request.auth.principal or a "
        "top-level request.auth.claims[NAME])"
    return f"unknown or unsupported condition key {key!r} (use {', '.join(CONDITION_KEYS)})"


def _wildcard(value: str) -> str | None:
    """Istio's forms: exact, ``prefix*``, ``*suffix`` or ``*`` alone."""
    if "*" in value.strip("*") or (value.count("*") > 1 and value != "*"):
        return f"{value!r}: '*' may only start or end the value (exact, prefix*, *suffix, *)"
    return None


def _principal(value: str) -> str | None:
    """``TD/ns/NS/sa/SA`` in Istio's forms; with the scheme it would never match (the
    translation adds ``spiffe://``), denying silently what the author meant to allow."""
    if value.lower().startswith("spiffe://"):
        return (
            f"{value!r}: write principals without the spiffe:// scheme ({value[9:]!r}); "
            "the scheme is added, so this value would never match"
        )
    return _wildcard(value)


def _request_principal(value: str) -> str | None:
    """``ISSUER/SUBJECT`` exactly, ``ISSUER/*``, ``*/SUBJECT`` or ``*`` (any)."""
    if value == "*":
        return None
    issuer, slash, subject = value.rpartition("/")
    if not slash or not issuer or not subject:
        return f"{value!r} must be ISSUER/SUBJECT, ISSUER/*, */SUBJECT or *"
    if (
        "*" in issuer.strip("*")
        or "*" in subject.strip("*")
        or ("*" in issuer and issuer != "*")
        or ("*" in subject and subject != "*")
    ):
        return f"{value!r}: request principals take '*' only as the whole issuer or subject"
    return None


def _path(value: str) -> str | None:
    if "{*}" in value or "{**}" in value:
        return f"path template {value!r} is not supported yet"
    return _wildcard(value)


def _port(value: str) -> str | None:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        return f"{value!r} must be a port number in 1..65535 (written as a string)"
    return None


def _cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} must be an IP address or CIDR block"
    return None
