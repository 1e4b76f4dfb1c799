"""What a VirtualService HTTP rule does: destinations, redirects, direct responses,
rewrites, mirrors and header operations (Istio's names and rules)."""

from __future__ import annotations

import base64
import binascii
from types import MappingProxyType

from controlplane.config import names
from controlplane.config.fields import DocContext, Fields, as_string
from controlplane.config.http_match import header_name_problem, regex_problem
from controlplane.config.workload_entry import MAX_PORT
from controlplane.traffic_model import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPMirror,
    HTTPRedirect,
    HTTPRewrite,
    RedirectPortPolicy,
    RegexRewrite,
)

REDIRECT_CODES = (301, 302, 303, 307, 308)
REDIRECT_FIELDS = ("uri", "authority", "port", "derivePort", "scheme", "redirectCode")
DERIVE_PORT = tuple(policy.value for policy in RedirectPortPolicy)
REWRITE_FIELDS = ("uri", "authority", "uriRegexRewrite")
MIRROR_FIELDS = ("destination", "percentage")


def parse_destination(ctx: DocContext, path: str, value: object) -> Destination | None:
    """Istio's Destination: host (a service name), optional subset and port.number."""
    fields = Fields.of(ctx, path, value)
    if fields is None:
        return None
    before = ctx.count
    fields.reject_unknown(("host", "subset", "port"), what="a destination")
    host = fields.string("host", required=True, check=names.service_host)
    subset = fields.string("subset", check=names.dns_label)
    port: int | None = None
    port_fields = fields.mapping("port")
    if port_fields is not None:
        port_fields.reject_unknown(("number",), what="a port selector")
        port = port_fields.integer("number", minimum=1, maximum=MAX_PORT, required=True)
    if ctx.count != before or host is None:
        return None
    return Destination(host=host, subset=subset or "", port=port)


def parse_headers(fields: Fields, key: str) -> Headers | None:
    """``headers``: request / response, each set / add / remove."""
    headers = fields.mapping(key)
    if headers is None:
        return None
    before = fields.ctx.count
    headers.reject_unknown(("request", "response"), what="headers")
    request = _header_operations(headers, "request")
    response = _header_operations(headers, "response")
    if fields.ctx.count != before:
        return None
    return Headers(request=request or HeaderOperations(), response=response or HeaderOperations())


def _header_operations(headers: Fields, key: str) -> HeaderOperations | None:
    fields = headers.mapping(key)
    if fields is None:
        return None
    fields.reject_unknown(("set", "add", "remove"), what="header operations")
    set_ = fields.string_map("set", key_check=_mutable_header, allow_empty_values=True)
    add = fields.string_map("add", key_check=_mutable_header, allow_empty_values=True)
    remove: list[str] = []
    for path, value in fields.items("remove") or ():
        name = as_string(fields.ctx, path, value, _mutable_header)
        if name is not None:
            remove.append(name)
    return HeaderOperations(
        set=set_ if set_ is not None else MappingProxyType({}),
        add=add if add is not None else MappingProxyType({}),
        remove=tuple(remove),
    )


def _mutable_header(name: str) -> str | None:
    problem = header_name_problem(name)
    if problem is not None:
        return problem
    if name.startswith(":") or name.lower() == "host":
        return f"header {name!r} cannot be changed here (use rewrite.authority for the host)"
    return None


def parse_redirect(fields: Fields) -> HTTPRedirect | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(REDIRECT_FIELDS, what="a redirect")
    uri = fields.string("uri")
    authority = fields.string("authority")
    port = fields.integer("port", minimum=1, maximum=MAX_PORT)
    derive = fields.choice("derivePort", supported=DERIVE_PORT, what="derivePort")
    fields.exclusive("port", "derivePort")
    scheme = fields.string("scheme")
    code = fields.data.get("redirectCode")
    valid_code = isinstance(code, int) and not isinstance(code, bool) and code in REDIRECT_CODES
    if code is not None and not valid_code:
        allowed = ", ".join(str(c) for c in REDIRECT_CODES)
        ctx.error(fields.at("redirectCode"), f"must be one of {allowed}, got {code!r}")
    if not any(fields.present(key) for key in ("uri", "authority", "port", "derivePort", "scheme")):
        ctx.error(fields.path, "must set at least one of uri, authority, port, derivePort, scheme")
    if ctx.count != before:
        return None
    return HTTPRedirect(
        uri=uri or "",
        authority=authority or "",
        port=port,
        derive_port=RedirectPortPolicy(derive) if derive else None,
        scheme=scheme or "",
        redirect_code=code if isinstance(code, int) and valid_code else 301,
    )


def parse_direct_response(fields: Fields) -> HTTPDirectResponse | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(("status", "body"), what="a direct response")
    status = fields.integer("status", minimum=200, maximum=599, required=True)
    body: bytes | None = None
    body_fields = fields.mapping("body")
    if body_fields is not None:
        body_fields.reject_unknown(("string", "bytes"), what="a body")
        if not body_fields.present("string") and not body_fields.present("bytes"):
            ctx.error(body_fields.path, "must set one of string, bytes")
        elif body_fields.exclusive("string", "bytes"):
            body = _body(body_fields)
    if ctx.count != before or status is None:
        return None
    return HTTPDirectResponse(status=status, body=body)


def _body(fields: Fields) -> bytes | None:
    text = fields.data.get("string")
    if text is not None:
        if not isinstance(text, str):
            fields.string("string")
            return None
        return text.encode()
    encoded = fields.string("bytes")
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        fields.ctx.error(fields.at("bytes"), "must be base64")
        return None


def parse_rewrite(fields: Fields) -> HTTPRewrite | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(REWRITE_FIELDS, what="a rewrite")
    uri = fields.data.get("uri")
    if uri is not None and not isinstance(uri, str):
        fields.string("uri")
    authority = fields.string("authority")
    fields.exclusive("uri", "uriRegexRewrite")
    regex = _regex_rewrite(fields)
    if not any(fields.present(key) for key in REWRITE_FIELDS):
        ctx.error(fields.path, "must set at least one of uri, authority, uriRegexRewrite")
    if ctx.count != before:
        return None
    return HTTPRewrite(
        uri=uri if isinstance(uri, str) else "", authority=authority or "", uri_regex_rewrite=regex
    )


def _regex_rewrite(fields: Fields) -> RegexRewrite | None:
    rewrite = fields.mapping("uriRegexRewrite")
    if rewrite is None:
        return None
    rewrite.reject_unknown(("match", "rewrite"), what="uriRegexRewrite")
    pattern = rewrite.string("match", required=True, check=regex_problem)
    substitution = rewrite.data.get("rewrite")
    if substitution is None:
        rewrite.ctx.error(rewrite.at("rewrite"), "is required")
    elif not isinstance(substitution, str):
        rewrite.string("rewrite")
    elif pattern is not None:
        return RegexRewrite(match=pattern, rewrite=substitution)
    return None


def parse_mirrors(fields: Fields) -> tuple[HTTPMirror, ...]:
    """``mirror`` + ``mirrorPercentage``, or ``mirrors[]``; reports and returns () on error."""
    ctx = fields.ctx
    fields.exclusive("mirror", "mirrors")
    if fields.present("mirrorPercentage") and not fields.present("mirror"):
        ctx.error(fields.at("mirrorPercentage"), "needs mirror (mirrors[] carry their own)")
    mirrors: list[HTTPMirror] = []
    if fields.present("mirror"):
        destination = parse_destination(ctx, fields.at("mirror"), fields.data["mirror"])
        percentage = fields.percentage("mirrorPercentage")
        if destination is not None:
            mirrors.append(HTTPMirror(destination, 100.0 if percentage is None else percentage))
    for path, value in fields.items("mirrors", non_empty=True) or ():
        mirror = Fields.of(ctx, path, value)
        if mirror is None:
            continue
        mirror.reject_unknown(MIRROR_FIELDS, what="a mirror")
        destination = None
        if mirror.present("destination"):
            destination = parse_destination(
                ctx, mirror.at("destination"), mirror.data["destination"]
            )
        else:
            ctx.error(mirror.at("destination"), "is required")
        percentage = mirror.percentage("percentage")
        if destination is not None:
            mirrors.append(HTTPMirror(destination, 100.0 if percentage is None else percentage))
    return tuple(mirrors)
