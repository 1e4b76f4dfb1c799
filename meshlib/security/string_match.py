"""String and header matchers for RBAC, with Envoy's semantics, compiled once.

``safe_regex`` is an RE2 full match (as Envoy and gRPC evaluate it; ``ignore_case``
has no effect on it); ``ignore_case`` lower-cases both sides for the other kinds. A
header sent several times is matched on its values joined by ``","``; an absent
header fails every kind but PRESENT whatever ``invert`` says; RANGE is ``[start,
end)`` on an integer value. (The route matchers of :mod:`meshlib.matching` follow
the same rules; this copy keeps the security package free of xDS imports.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from meshlib.security.authz_model import HeaderMatch, MatchKind, StringMatch

StringTest = Callable[[str], bool]


def _re2(pattern: str, where: str) -> Any:
    try:
        re2 = importlib.import_module("re2")
    except ImportError as exc:
        raise ValueError(f"{where}: safe_regex needs RE2 (the google-re2 distribution)") from exc
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except Exception as exc:  # re2.error is not a stable public name across versions
        raise ValueError(f"{where}: invalid RE2 pattern {pattern!r}: {exc}") from exc


def string_test(kind: MatchKind, value: str, ignore_case: bool, where: str) -> StringTest:
    """A predicate on one string for the string-valued kinds (PRESENT: any string)."""
    if kind is MatchKind.SAFE_REGEX:
        regex = _re2(value, where)
        return lambda s: regex.fullmatch(s) is not None
    if kind is MatchKind.PRESENT:
        return lambda s: True
    want = value.lower() if ignore_case else value
    if kind is MatchKind.EXACT:
        test: StringTest = want.__eq__
    elif kind is MatchKind.PREFIX:
        test = lambda s: s.startswith(want)  # noqa: E731
    elif kind is MatchKind.SUFFIX:
        test = lambda s: s.endswith(want)  # noqa: E731
    elif kind is MatchKind.CONTAINS:
        test = lambda s: want in s  # noqa: E731
    else:
        raise ValueError(f"{where}: matcher kind {kind.value!r} is not valid here")
    if ignore_case:
        inner = test
        return lambda s: inner(s.lower())
    return test


def compile_string(match: StringMatch, where: str) -> StringTest:
    return string_test(match.kind, match.value, match.ignore_case, where)


def compile_header(match: HeaderMatch, where: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate on a request's headers (lower-case names)."""
    name, invert = match.name.lower(), match.invert
    if match.kind is MatchKind.PRESENT:
        present = match.present
        return lambda headers: ((headers.get(name) is not None) == present) != invert
    if match.kind is MatchKind.RANGE:
        if match.range_end < match.range_start:
            raise ValueError(f"{where}: range end {match.range_end} < start {match.range_start}")
        start, end = match.range_start, match.range_end

        def in_range(headers: Mapping[str, str]) -> bool:
            value = headers.get(name)
            if value is None:
                return False
            try:
                number = int(value)
            except ValueError:
                return False
            return (start <= number < end) != invert

        return in_range
    test = string_test(match.kind, match.value, match.ignore_case, where)

    def matches(headers: Mapping[str, str]) -> bool:
        value = headers.get(name)
        return value is not None and test(value) != invert

    return matches
