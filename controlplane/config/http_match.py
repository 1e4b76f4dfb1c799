"""``spec.http[].match[]`` of a VirtualService: Istio's HTTPMatchRequest.

``sourceLabels`` (label key -> value) and ``sourceNamespace`` choose the
callers a block applies to; translate evaluates them per caller node.

A StringMatch is exactly one of ``exact``, ``prefix``, ``regex`` (RE2, matched
against the whole value as Envoy's ``safe_regex`` does), or ``{}`` meaning
"present" where Istio allows it (headers, queryParams, withoutHeaders). Header
names are case-insensitive, so the model stores them lower case.
"""

from __future__ import annotations

import importlib
import re
from types import MappingProxyType
from typing import Any

from controlplane.config import names
from controlplane.config.fields import DocContext, Fields
from controlplane.config.workload_entry import MAX_PORT
from controlplane.traffic_model import HTTPMatchRequest, MatchKind, StringMatch

MATCH_FIELDS = (
    "name",
    "uri",
    "scheme",
    "method",
    "authority",
    "headers",
    "queryParams",
    "withoutHeaders",
    "ignoreUriCase",
    "port",
    "sourceLabels",
    "sourceNamespace",
)
MATCH_NOT_YET = ("gateways", "statPrefix")
STRING_MATCH_FIELDS = tuple(kind.value for kind in MatchKind if kind is not MatchKind.PRESENT)
_HEADER_NAME = re.compile(r"^:?[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


def _re2() -> Any:
    return importlib.import_module("re2")  # google-re2 ships no type hints


def regex_problem(pattern: str) -> str | None:
    """None when RE2 (what Envoy and gRPC use) compiles ``pattern``, else why not."""
    re2 = _re2()
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except Exception as exc:  # re2.error is not a stable public name across versions
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        return f"invalid RE2 regex {pattern!r}: {reason}"
    return None


def header_name_problem(name: str) -> str | None:
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a valid HTTP header name"
    return None


def as_string_match(
    ctx: DocContext,
    path: str,
    value: object,
    *,
    allow_present: bool = False,
    allow_prefix: bool = True,
) -> StringMatch | None:
    """One StringMatch; ``{}`` (present) only where ``allow_present``."""
    fields = Fields.of(ctx, path, value)
    if fields is None:
        return None
    before = ctx.count
    fields.reject_unknown(STRING_MATCH_FIELDS, what="a string match")
    present = [key for key in STRING_MATCH_FIELDS if key in fields.data]
    if ctx.count != before:
        return None
    if not present:
        if allow_present:
            return StringMatch(MatchKind.PRESENT)
        ctx.error(path, "must set one of exact, prefix, regex")
        return None
    if not fields.exclusive(*STRING_MATCH_FIELDS):
        return None
    kind = MatchKind(present[0])
    if kind is MatchKind.PREFIX and not allow_prefix:
        ctx.error(fields.at("prefix"), "prefix match is not supported here (use exact or regex)")
        return None
    text = fields.data[kind.value]
    if not isinstance(text, str):
        fields.string(kind.value)  # reports the type
        return None
    if kind is MatchKind.REGEX:
        problem = regex_problem(text)
        if problem is not None:
            ctx.error(fields.at("regex"), problem)
            return None
    return StringMatch(kind, text)


def parse_http_match(fields: Fields) -> HTTPMatchRequest | None:
    """Validate one match block; None when any issue was reported."""
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(MATCH_FIELDS, MATCH_NOT_YET, "a match")
    name = fields.string("name")
    plain = {
        key: as_string_match(ctx, fields.at(key), fields.data[key])
        for key in ("uri", "scheme", "method", "authority")
        if fields.present(key)
    }
    headers = _matchers(fields, "headers", header_names=True)
    query_params = _matchers(fields, "queryParams", header_names=False)
    without_headers = _matchers(fields, "withoutHeaders", header_names=True)
    ignore_uri_case = fields.boolean("ignoreUriCase")
    port = fields.integer("port", minimum=1, maximum=MAX_PORT)
    source_labels = fields.string_map(
        "sourceLabels",
        key_check=names.label_key,
        value_check=names.label_value,
        allow_empty_values=True,
    )
    source_namespace = fields.string("sourceNamespace", check=names.dns_label)
    uri = plain.get("uri")
    if ignore_uri_case and uri is not None and uri.kind is MatchKind.REGEX:
        ctx.error(
            fields.at("ignoreUriCase"),
            "has no effect on a regex uri match (Envoy ignores it there); use (?i) in the regex",
        )
    if ctx.count != before:
        return None
    return HTTPMatchRequest(
        name=name or "",
        uri=uri,
        scheme=plain.get("scheme"),
        method=plain.get("method"),
        authority=plain.get("authority"),
        headers=headers,
        query_params=query_params,
        without_headers=without_headers,
        ignore_uri_case=bool(ignore_uri_case),
        port=port,
        source_labels=source_labels or MappingProxyType({}),
        source_namespace=source_namespace or "",
    )


def _matchers(
    fields: Fields, key: str, *, header_names: bool
) -> MappingProxyType[str, StringMatch]:
    """A map of name -> StringMatch; header names lower-cased, one per name."""
    result: dict[str, StringMatch] = {}
    mapping = fields.mapping(key)
    if mapping is None:
        return MappingProxyType(result)
    for name, value in mapping.data.items():
        path = mapping.at(name)
        problem = header_name_problem(name) if header_names and name else None
        if not name:
            problem = "name must not be empty"
        if problem is not None:
            fields.ctx.error(path, problem)
            continue
        stored = name.lower() if header_names else name
        if stored in result:
            fields.ctx.error(path, f"duplicate header {stored!r} (header names ignore case)")
            continue
        if value is None:
            fields.ctx.error(path, "must be a string match (use {} to match presence)")
            continue
        match = as_string_match(
            fields.ctx, path, value, allow_present=True, allow_prefix=header_names
        )
        if match is not None:
            result[stored] = match
    return MappingProxyType(result)
