"""Header, query-parameter and string matchers, shared by routes, retry
policies and the fault filter."""

from __future__ import annotations

from typing import Any

from meshlib.xds_client._decode_util import DecodeContext, check_regex
from meshlib.xds_client.resources import HeaderMatcher, HeaderMatchKind, QueryParameterMatcher

_STRING_KINDS = {
    "exact": HeaderMatchKind.EXACT,
    "prefix": HeaderMatchKind.PREFIX,
    "suffix": HeaderMatchKind.SUFFIX,
    "contains": HeaderMatchKind.CONTAINS,
    "safe_regex": HeaderMatchKind.SAFE_REGEX,
}
_LEGACY_HEADER_KINDS = {
    "exact_match": HeaderMatchKind.EXACT,
    "prefix_match": HeaderMatchKind.PREFIX,
    "suffix_match": HeaderMatchKind.SUFFIX,
    "contains_match": HeaderMatchKind.CONTAINS,
}


def header_matchers(ctx: DecodeContext, headers: Any, where: str) -> tuple[HeaderMatcher, ...]:
    """A repeated ``envoy.config.route.v3.HeaderMatcher`` field."""
    return tuple(header_matcher(ctx, h, f"{where}[{i}]") for i, h in enumerate(headers))


def header_matcher(ctx: DecodeContext, header: Any, where: str) -> HeaderMatcher:
    if not header.name:
        raise ctx.error(f"{where}.name: required")
    spec = header.WhichOneof("header_match_specifier")
    common: dict[str, Any] = {"name": header.name, "invert": header.invert_match}
    if spec in _LEGACY_HEADER_KINDS:
        return HeaderMatcher(kind=_LEGACY_HEADER_KINDS[spec], value=getattr(header, spec), **common)
    if spec == "safe_regex_match":
        pattern = check_regex(ctx, header.safe_regex_match.regex, f"{where}.safe_regex_match")
        return HeaderMatcher(kind=HeaderMatchKind.SAFE_REGEX, value=pattern, **common)
    if spec == "range_match":
        rng = header.range_match
        return HeaderMatcher(
            kind=HeaderMatchKind.RANGE, range_start=rng.start, range_end=rng.end, **common
        )
    if spec == "present_match":
        return HeaderMatcher(kind=HeaderMatchKind.PRESENT, present=header.present_match, **common)
    if spec == "string_match":
        kind, value = string_matcher(ctx, header.string_match, f"{where}.string_match")
        return HeaderMatcher(
            kind=kind, value=value, ignore_case=header.string_match.ignore_case, **common
        )
    raise ctx.error(f"{where}: header match specifier required")


def query_matcher(ctx: DecodeContext, query: Any, where: str) -> QueryParameterMatcher:
    if not query.name:
        raise ctx.error(f"{where}.name: required")
    spec = query.WhichOneof("query_parameter_match_specifier")
    if spec == "string_match":
        kind, value = string_matcher(ctx, query.string_match, f"{where}.string_match")
        return QueryParameterMatcher(
            name=query.name, kind=kind, value=value, ignore_case=query.string_match.ignore_case
        )
    if spec == "present_match" and not query.present_match:
        raise ctx.error(f"{where}.present_match: false is not supported")
    return QueryParameterMatcher(name=query.name, kind=HeaderMatchKind.PRESENT)


def string_matcher(ctx: DecodeContext, matcher: Any, where: str) -> tuple[HeaderMatchKind, str]:
    spec = matcher.WhichOneof("match_pattern")
    if spec == "safe_regex":
        return HeaderMatchKind.SAFE_REGEX, check_regex(
            ctx, matcher.safe_regex.regex, f"{where}.safe_regex"
        )
    if spec in _STRING_KINDS:
        return _STRING_KINDS[spec], getattr(matcher, spec)
    if spec is None:
        raise ctx.error(f"{where}: match pattern required")
    raise ctx.error(f"{where}.{spec}: not supported")
