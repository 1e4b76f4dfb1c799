"""JWT filter config (``envoy.extensions.filters.http.jwt_authn.v3``) -> JwtAuthnConfig.

Decoded: providers with ``issuer``, ``audiences``, ``local_jwks`` (inline), where
the token is read (``from_headers``, ``from_params``; neither: ``Authorization:
Bearer``), ``forward``, ``forward_payload_header``, ``payload_in_metadata``,
``clock_skew_seconds``; the requirement rules (path prefix or ``/``) and the
``requirement_map``. Refused by name, since each would change who gets in:
``remote_jwks`` (the control plane pushes keys inline), ``subjects``,
``require_expiration``, ``max_lifetime``, ``from_cookies``, ``claim_to_headers``,
``filter_state_rules``, and rule matches other than a path prefix. A JWKS that is
not usable (not JSON, no keys, a bad key) is NACKed naming the provider and key.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from meshlib.errors import JwtConfigError
from meshlib.security.authz_model import (
    JwtAuthnConfig,
    JwtHeader,
    JwtProvider,
    JwtRequirement,
    JwtRule,
    RequirementKind,
)
from meshlib.xds_client._decode_util import DecodeContext, reject_if_set, unpack_any

_MAX_DEPTH = 32
_PROVIDER_UNSUPPORTED = (
    "remote_jwks",
    "subjects",
    "require_expiration",
    "max_lifetime",
    "from_cookies",
    "claim_to_headers",
    "header_in_metadata",
    "failed_status_in_metadata",
)


def decode_jwt_filter(ctx: DecodeContext, typed_config: Any, where: str) -> JwtAuthnConfig:
    config = unpack_any(ctx, typed_config, jwt_pb2.JwtAuthentication, where)
    reject_if_set(ctx, config, ("filter_state_rules",), where)
    providers = tuple(
        _provider(ctx, name, config.providers[name], f"{where}.providers[{name}]")
        for name in sorted(config.providers)
    )
    known = {p.name for p in providers}
    named = {
        name: _requirement(
            ctx, config.requirement_map[name], known, f"{where}.requirement_map[{name}]", 0
        )
        for name in sorted(config.requirement_map)
    }
    rules = tuple(
        _rule(ctx, rule, known, named, f"{where}.rules[{i}]") for i, rule in enumerate(config.rules)
    )
    return JwtAuthnConfig(providers=providers, rules=rules)


def _provider(ctx: DecodeContext, name: str, msg: Any, where: str) -> JwtProvider:
    reject_if_set(ctx, msg, _PROVIDER_UNSUPPORTED, where)
    if msg.WhichOneof("jwks_source_specifier") != "local_jwks":
        raise ctx.error(f"{where}.local_jwks: required (inline keys)")
    source = msg.local_jwks.WhichOneof("specifier")
    if source == "inline_string":
        jwks = msg.local_jwks.inline_string
    elif source == "inline_bytes":
        try:
            jwks = msg.local_jwks.inline_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ctx.error(f"{where}.local_jwks.inline_bytes: not UTF-8") from exc
    else:
        raise ctx.error(f"{where}.local_jwks: inline_string or inline_bytes required")
    from meshlib.security.jwt_keys import parse_jwks  # PyJWT: only for a JWT filter

    try:
        parse_jwks(jwks, f"{where}.local_jwks")
    except JwtConfigError as exc:
        raise ctx.error(str(exc)) from exc
    for i, header in enumerate(msg.from_headers):
        if not header.name:
            raise ctx.error(f"{where}.from_headers[{i}].name: required")
    return JwtProvider(
        name=name,
        issuer=msg.issuer,
        audiences=tuple(msg.audiences),
        jwks=jwks,
        from_headers=tuple(JwtHeader(h.name.lower(), h.value_prefix) for h in msg.from_headers),
        from_params=tuple(msg.from_params),
        forward=msg.forward,
        forward_payload_header=msg.forward_payload_header.lower(),
        payload_in_metadata=msg.payload_in_metadata,
        clock_skew_s=msg.clock_skew_seconds or 60,
    )


def _requirement(
    ctx: DecodeContext, msg: Any, known: set[str], where: str, depth: int
) -> JwtRequirement:
    if depth > _MAX_DEPTH:
        raise ctx.error(f"{where}: requirements nested deeper than {_MAX_DEPTH}")
    kind = msg.WhichOneof("requires_type")
    at = f"{where}.{kind}"
    if kind == "provider_name":
        _known(ctx, msg.provider_name, known, at)
        return JwtRequirement(RequirementKind.PROVIDER, provider=msg.provider_name)
    if kind == "provider_and_audiences":
        name = msg.provider_and_audiences.provider_name
        _known(ctx, name, known, f"{at}.provider_name")
        audiences = tuple(msg.provider_and_audiences.audiences)
        return JwtRequirement(RequirementKind.PROVIDER, provider=name, audiences=audiences)
    if kind in ("requires_any", "requires_all"):
        children = tuple(
            _requirement(ctx, c, known, f"{at}.requirements[{i}]", depth + 1)
            for i, c in enumerate(getattr(msg, kind).requirements)
        )
        if len(children) < 2:
            raise ctx.error(f"{at}.requirements: at least two required")
        return JwtRequirement(RequirementKind(kind), children=children)
    if kind == "allow_missing":
        return JwtRequirement(RequirementKind.ALLOW_MISSING)
    if kind == "allow_missing_or_failed":
        return JwtRequirement(RequirementKind.ALLOW_MISSING_OR_FAILED)
    if kind is None:
        raise ctx.error(f"{where}: a requirement is required")
    raise ctx.error(f"{at}: not supported")


def _known(ctx: DecodeContext, name: str, known: set[str], where: str) -> None:
    if name not in known:
        raise ctx.error(f"{where}: no provider named {name!r}")


def _rule(
    ctx: DecodeContext,
    msg: Any,
    known: set[str],
    named: dict[str, JwtRequirement],
    where: str,
) -> JwtRule:
    match = msg.match
    reject_if_set(
        ctx,
        match,
        (
            "headers",
            "query_parameters",
            "grpc",
            "tls_context",
            "dynamic_metadata",
            "runtime_fraction",
        ),
        f"{where}.match",
    )
    if match.WhichOneof("path_specifier") != "prefix":
        raise ctx.error(f"{where}.match: only a path prefix is supported")
    if match.HasField("case_sensitive") and not match.case_sensitive.value:
        raise ctx.error(f"{where}.match.case_sensitive: false is not supported")
    spec = msg.WhichOneof("requirement_type")
    requirement: JwtRequirement | None = None
    if spec == "requires":
        requirement = _requirement(ctx, msg.requires, known, f"{where}.requires", 0)
    elif spec == "requirement_name":
        if msg.requirement_name not in named:
            raise ctx.error(
                f"{where}.requirement_name: {msg.requirement_name!r} is not in requirement_map"
            )
        requirement = named[msg.requirement_name]
    return JwtRule(prefix=match.prefix, requirement=requirement)
