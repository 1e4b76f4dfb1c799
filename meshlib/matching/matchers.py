"""Route match conditions, compiled once when a route table is built.

Each xDS ``RouteMatch`` becomes a :class:`CompiledRouteMatch`: a path test plus
optional header, query-parameter and runtime-fraction tests, each prepared
(lower-cased, regex-compiled, bounds parsed) so that matching a request only
walks these objects. Semantics follow Envoy's (and gRFC A28's): a header that
is absent fails every string and range matcher whatever ``invert`` says;
``present`` compares presence (then ``invert`` flips it); ``range`` is
``[start, end)`` on an integer value; a header sent several times is matched
on its values joined by ``","``. ``safe_regex`` is an RE2 full match and
ignores ``ignore_case`` / ``case_sensitive``, as Envoy does. The
``runtime_fraction`` draw is made once per request by the route table and
shared by every route it evaluates, as Envoy shares its per-request random value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import parse_qsl

from meshlib.matching.regex import compile_re2
from meshlib.xds_client.resources import (
    HeaderMatcher,
    HeaderMatchKind,
    PathMatchKind,
    QueryParameterMatcher,
    RouteMatch,
)

StringTest = Callable[[str], bool]


class HeaderSource(Protocol):
    """Request headers as matchers read them: lower-case names, pseudo-headers
    (``:authority``, ``:method``, ``:path``, ``:scheme``) included, several
    values joined by ``","``."""

    def get(self, name: str) -> str | None: ...


def string_test(kind: HeaderMatchKind, value: str, ignore_case: bool, where: str) -> StringTest:
    """A predicate on one string value for the string-valued matcher kinds."""
    if kind is HeaderMatchKind.SAFE_REGEX:  # ignore_case has no effect on regexes (Envoy)
        regex = compile_re2(value, where=where)
        return lambda s: regex.fullmatch(s) is not None
    if kind is HeaderMatchKind.PRESENT:
        return lambda s: True
    want = value.lower() if ignore_case else value
    if kind is HeaderMatchKind.EXACT:
        test: StringTest = want.__eq__
    elif kind is HeaderMatchKind.PREFIX:
        test = lambda s: s.startswith(want)  # noqa: E731
    elif kind is HeaderMatchKind.SUFFIX:
        test = lambda s: s.endswith(want)  # noqa: E731
    elif kind is HeaderMatchKind.CONTAINS:
        test = lambda s: want in s  # noqa: E731
    else:
        raise ValueError(f"{where}: matcher kind {kind.value!r} is not valid here")
    if ignore_case:
        inner = test
        return lambda s: inner(s.lower())
    return test


class CompiledHeaderMatch:
    """One prepared header matcher."""

    __slots__ = ("_invert", "_present", "_range", "_test", "name")

    def __init__(self, m: HeaderMatcher, where: str) -> None:
        self.name = m.name.lower()
        self._invert = m.invert
        self._present: bool | None = m.present if m.kind is HeaderMatchKind.PRESENT else None
        self._range: tuple[int, int] | None = None
        self._test: StringTest | None = None
        if m.kind is HeaderMatchKind.RANGE:
            if m.range_end < m.range_start:
                raise ValueError(f"{where}: range end {m.range_end} < start {m.range_start}")
            self._range = (m.range_start, m.range_end)
        elif m.kind is not HeaderMatchKind.PRESENT:
            self._test = string_test(m.kind, m.value, m.ignore_case, where)

    def matches(self, headers: HeaderSource) -> bool:
        value = headers.get(self.name)
        if self._present is not None:
            return ((value is not None) == self._present) != self._invert
        if value is None:
            return False
        if self._range is not None:
            try:
                number = int(value)
            except ValueError:
                return False
            start, end = self._range
            return (start <= number < end) != self._invert
        assert self._test is not None
        return self._test(value) != self._invert


class CompiledQueryMatch:
    """One prepared query-parameter matcher (first value of the parameter wins)."""

    __slots__ = ("_test", "name")

    def __init__(self, m: QueryParameterMatcher, where: str) -> None:
        if m.kind is HeaderMatchKind.RANGE:
            raise ValueError(f"{where}: query parameter matchers cannot be ranges")
        self.name = m.name
        self._test = string_test(m.kind, m.value, m.ignore_case, where)

    def matches(self, params: Mapping[str, str]) -> bool:
        value = params.get(self.name)
        return value is not None and self._test(value)


def _path_test(match: RouteMatch, where: str) -> StringTest:
    kind, path, sensitive = match.path_kind, match.path, match.case_sensitive
    if kind is PathMatchKind.SAFE_REGEX:  # case_sensitive is ignored for regexes (Envoy)
        regex = compile_re2(path, where=f"{where}.safe_regex")
        return lambda p: regex.fullmatch(p) is not None
    want = path if sensitive else path.lower()
    if kind is PathMatchKind.PREFIX:
        test: StringTest = lambda p: p.startswith(want)  # noqa: E731
    elif kind is PathMatchKind.PATH:
        test = want.__eq__
    elif kind is PathMatchKind.PATH_SEPARATED_PREFIX:
        if want.endswith("/"):
            raise ValueError(f"{where}.path_separated_prefix: must not end with '/': {path!r}")
        with_sep = want + "/"
        test = lambda p: p == want or p.startswith(with_sep)  # noqa: E731
    else:
        raise ValueError(f"{where}: unsupported path match {kind!r}")
    if sensitive:
        return test
    return lambda p: test(p.lower())


def parse_query(query: str) -> dict[str, str]:
    """Query parameters by name, first occurrence winning (as Envoy does)."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)
    return params


class CompiledRouteMatch:
    """Everything a route's ``match`` asks of a request, prepared.

    ``fraction_per_million`` is left to the caller (None: always), which
    draws once per request; ``prefix_length`` is how much of the path a
    ``prefix_rewrite`` replaces (None: the whole path, for exact and regex).
    """

    __slots__ = ("_headers", "_path", "_query", "fraction_per_million", "prefix_length")

    def __init__(self, match: RouteMatch, where: str) -> None:
        self._path = _path_test(match, where)
        self._headers = tuple(
            CompiledHeaderMatch(h, f"{where}.headers[{i}]") for i, h in enumerate(match.headers)
        )
        self._query = tuple(
            CompiledQueryMatch(q, f"{where}.query_parameters[{i}]")
            for i, q in enumerate(match.query_parameters)
        )
        fraction = match.fraction_per_million
        if fraction is not None and not 0 <= fraction <= 1_000_000:
            raise ValueError(f"{where}.runtime_fraction: {fraction} is not in [0, 1000000]")
        self.fraction_per_million = None if fraction is None or fraction >= 1_000_000 else fraction
        prefixed = (PathMatchKind.PREFIX, PathMatchKind.PATH_SEPARATED_PREFIX)
        self.prefix_length = len(match.path) if match.path_kind in prefixed else None

    @property
    def uses_headers(self) -> bool:
        return bool(self._headers)

    @property
    def uses_query(self) -> bool:
        return bool(self._query)

    def matches(
        self, path: str, headers: HeaderSource, params: Mapping[str, str] | None = None
    ) -> bool:
        """Path, headers and query (``params``: parsed query, needed when ``uses_query``)."""
        if not self._path(path):
            return False
        for header in self._headers:
            if not header.matches(headers):
                return False
        if self._query:
            assert params is not None
            for param in self._query:
                if not param.matches(params):
                    return False
        return True
