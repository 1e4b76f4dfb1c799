"""RequestAuthentication (security.istio.io/v1): which JWTs the selected workloads accept.

``jwtRules[]``: ``issuer`` (required), ``audiences``, ``jwks`` (inline JSON Web Key Set,
checked here) or ``jwksUri`` (an http(s) URL the control plane fetches, refreshes and
sends inline: :mod:`controlplane.jwks_keeper`), ``fromHeaders`` (name, prefix),
``fromParams``, ``forwardOriginalToken``, ``outputPayloadToHeader``.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from controlplane.config.fields import Fields, as_string
from controlplane.config.resource import Header
from controlplane.config.workload_selector import parse_selector
from controlplane.security_model import JwtHeader, JwtRule, RequestAuthentication
from meshlib.errors import JwtConfigError
from meshlib.security.jwt_keys import parse_jwks

SPEC_FIELDS = ("selector", "jwtRules")
SPEC_NOT_YET = ("targetRef", "targetRefs")
RULE_FIELDS = (
    "issuer",
    "audiences",
    "jwks",
    "jwksUri",
    "fromHeaders",
    "fromParams",
    "forwardOriginalToken",
    "outputPayloadToHeader",
)
RULE_NOT_YET = ("fromCookies", "outputClaimToHeaders", "timeout")


def parse_request_authentication(header: Header, spec: Fields) -> RequestAuthentication | None:
    """Validate a RequestAuthentication spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "RequestAuthentication spec")
    selector = parse_selector(spec)
    rules: list[JwtRule] = []
    for path, value in spec.items("jwtRules") or ():
        fields = Fields.of(ctx, path, value)
        rule = _rule(fields) if fields is not None else None
        if rule is not None:
            if any(r.issuer == rule.issuer for r in rules):
                ctx.error(f"{path}.issuer", f"duplicate issuer {rule.issuer!r}")
            rules.append(rule)
    if ctx.count != before:
        return None
    return RequestAuthentication(
        name=header.name,
        namespace=header.namespace,
        selector=selector,
        rules=tuple(rules),
        source=header.source,
    )


def _rule(fields: Fields) -> JwtRule | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(RULE_FIELDS, RULE_NOT_YET, "a JWT rule")
    issuer = fields.string("issuer", required=True)
    jwks = fields.string("jwks", check=jwks_problem)
    uri = fields.string("jwksUri", check=_uri_problem)
    if fields.present("jwks") and fields.present("jwksUri"):
        ctx.error(fields.at("jwksUri"), "give jwks or jwksUri, not both")
    elif not fields.present("jwks") and not fields.present("jwksUri"):
        ctx.error(fields.at("jwks"), "is required (the issuer's JSON Web Key Set), or jwksUri")
    audiences = _strings(fields, "audiences")
    params = _strings(fields, "fromParams")
    headers: list[JwtHeader] = []
    for path, value in fields.items("fromHeaders") or ():
        entry = Fields.of(ctx, path, value)
        if entry is None:
            continue
        entry.reject_unknown(("name", "prefix"), what="fromHeaders entry")
        name = entry.string("name", required=True)
        prefix = entry.data.get("prefix", "")
        if not isinstance(prefix, str):
            ctx.error(entry.at("prefix"), "must be a string")
        elif name is not None:
            headers.append(JwtHeader(name.lower(), prefix))
    forward = fields.boolean("forwardOriginalToken")
    output = fields.string("outputPayloadToHeader")
    if ctx.count != before or issuer is None or (jwks is None and uri is None):
        return None
    return JwtRule(
        issuer=issuer,
        jwks=jwks or "",
        jwks_uri=uri or "",
        audiences=audiences,
        from_headers=tuple(headers),
        from_params=params,
        forward_original_token=bool(forward),
        output_payload_to_header=output or "",
    )


def _strings(fields: Fields, key: str) -> tuple[str, ...]:
    found = (as_string(fields.ctx, path, value) for path, value in fields.items(key) or ())
    return tuple(text for text in found if text is not None)


def _uri_problem(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def jwks_problem(text: str) -> str | None:
    """What is wrong with a JSON Web Key Set, None when nothing is: meshlib's own parser
    decides (inline jwks and fetched jwksUri alike), so a set applied here is one every
    meshlib server accepts, and the other way round. Keys not for signatures (an IdP's
    ``use: enc`` RSA-OAEP key) are skipped; a set with no signing key is refused."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"is not JSON: {exc}"
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return 'must be a JSON Web Key Set: {"keys": [...]}'
    try:
        parse_jwks(text, "jwks")
    except JwtConfigError as exc:
        return str(exc).removeprefix("jwks: ")
    return None
