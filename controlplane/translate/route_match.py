"""One Istio HTTPMatchRequest to one Envoy RouteMatch.

Istio makes one Envoy route per match block, so a block maps to exactly one
RouteMatch: the uri picks the path specifier (prefix "/" when absent), every
other condition becomes a header or query parameter matcher. Method,
authority and scheme are the pseudo-headers ``:method``, ``:authority`` and
``:scheme``, as Envoy and gRPC see them. Regexes are RE2 (Envoy's default
engine; the deprecated ``google_re2`` field is left unset).
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from controlplane.traffic_model import HTTPMatchRequest, MatchKind, StringMatch
from controlplane.translate.errors import TranslationError

_PSEUDO_HEADERS = (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme"))


def catch_all() -> rc.RouteMatch:
    """Every request (prefix "/")."""
    return rc.RouteMatch(prefix="/")


def route_match(block: HTTPMatchRequest | None, where: str) -> rc.RouteMatch:
    """The RouteMatch for one match block (None: a rule without match blocks)."""
    if block is None:
        return catch_all()
    match = _path_match(block.uri, where)
    if block.ignore_uri_case:
        match.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    for attribute, header in _PSEUDO_HEADERS:
        value: StringMatch | None = getattr(block, attribute)
        if value is not None:
            match.headers.append(header_matcher(header, value, f"{where}.{attribute}"))
    match.headers.extend(_header_matchers(block.headers, invert=False, where=f"{where}.headers"))
    match.headers.extend(
        _header_matchers(block.without_headers, invert=True, where=f"{where}.withoutHeaders")
    )
    for name in sorted(block.query_params):
        match.query_parameters.append(
            _query_matcher(name, block.query_params[name], f"{where}.queryParams.{name}")
        )
    return match


def regex_matcher(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def string_matcher(value: StringMatch, where: str) -> string_pb2.StringMatcher:
    """exact / prefix / regex as a case-sensitive StringMatcher."""
    if value.kind is MatchKind.EXACT:
        return string_pb2.StringMatcher(exact=value.value)
    if value.kind is MatchKind.PREFIX:
        return string_pb2.StringMatcher(prefix=value.value)
    if value.kind is MatchKind.REGEX:
        _require_pattern(value.value, where)
        return string_pb2.StringMatcher(safe_regex=regex_matcher(value.value))
    raise TranslationError(f"{where}: a {value.kind.value} match cannot be a string matcher")


def header_matcher(
    name: str, value: StringMatch, where: str, *, invert: bool = False
) -> rc.HeaderMatcher:
    """``present`` (Istio's empty match) → present_match, else string_match. An
    empty prefix (which Envoy refuses) also means "present", as in Istio."""
    if value.kind is MatchKind.PRESENT or (value.kind is MatchKind.PREFIX and not value.value):
        return rc.HeaderMatcher(name=name, present_match=True, invert_match=invert)
    return rc.HeaderMatcher(
        name=name, string_match=string_matcher(value, where), invert_match=invert
    )


def _path_match(uri: StringMatch | None, where: str) -> rc.RouteMatch:
    if uri is None:
        return catch_all()
    if uri.kind is MatchKind.EXACT:
        return rc.RouteMatch(path=uri.value)
    if uri.kind is MatchKind.PREFIX:
        return rc.RouteMatch(prefix=uri.value or "/")
    if uri.kind is MatchKind.REGEX:
        # The parser refuses ignoreUriCase with a regex (Envoy's case_sensitive does
        # not apply to regexes; users write RE2's (?i) themselves).
        _require_pattern(uri.value, f"{where}.uri")
        return rc.RouteMatch(safe_regex=regex_matcher(uri.value))
    raise TranslationError(f"{where}.uri: a uri match must be exact, prefix or regex")


def _header_matchers(
    headers: Mapping[str, StringMatch], *, invert: bool, where: str
) -> list[rc.HeaderMatcher]:
    return [
        header_matcher(name, headers[name], f"{where}.{name}", invert=invert)
        for name in sorted(headers)
    ]


def _query_matcher(name: str, value: StringMatch, where: str) -> rc.QueryParameterMatcher:
    if value.kind is MatchKind.PRESENT or (value.kind is MatchKind.PREFIX and not value.value):
        return rc.QueryParameterMatcher(name=name, present_match=True)
    return rc.QueryParameterMatcher(name=name, string_match=string_matcher(value, where))


def _require_pattern(pattern: str, where: str) -> None:
    if not pattern:
        raise TranslationError(f"{where}: a regex match needs a pattern")
