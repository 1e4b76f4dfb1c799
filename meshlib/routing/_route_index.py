"""Which routes of a virtual host could match a path, without testing them all.

Routes are tried in order and the first match wins, so a linear scan costs
O(routes) per request. :class:`PathIndex` is built once per virtual host from
the routes' path matchers and gives, for one path, the indexes of the routes
whose path matcher may match, in route order:

- exact paths: a dict (case-sensitive) and a dict on lower-cased paths;
- prefixes: for every prefix length present, a dict from that many leading
  characters to routes (case-insensitive ones keyed and looked up lower-cased);
- ``path_separated_prefix`` ``P``: an exact entry ``P`` plus a prefix ``P/``;
- regexes: a (case-sensitive) prefix entry for the literal text the pattern
  starts with (:func:`regex_literal_prefix`), as a full match must begin with
  it; a pattern without one sits under the empty prefix, checked for every path.

The table then runs each candidate's full matcher (path, headers, query,
runtime fraction) in order, so the result is exactly the linear scan's: the
index only drops routes whose path test cannot succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.xds_client.resources import PathMatchKind, RouteMatch

_Buckets = dict[str, list[int]]

#: Characters with a meaning in RE2 outside a character class (and "]", "}").
_REGEX_META = frozenset("\\.^$*+?()[]{}|")
#: Quantifiers that allow zero of the character before them.
_MAY_SKIP = frozenset("*?{")


def regex_literal_prefix(pattern: str) -> str:
    """The literal text every full match of ``pattern`` starts with ("" when
    unsure: alternation anywhere, a leading group, class, escape or flag)."""
    if "|" in pattern:
        return ""
    literal: list[str] = []
    for char in pattern:
        if char in _REGEX_META:
            if char in _MAY_SKIP and literal:
                literal.pop()
            break
        literal.append(char)
    return "".join(literal)


class _PrefixLevels:
    """Prefix entries grouped by length: ``path[:length]`` looked up per length."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: dict[int, _Buckets] = {}

    def add(self, prefix: str, index: int) -> None:
        self._levels.setdefault(len(prefix), {}).setdefault(prefix, []).append(index)

    def freeze(self) -> tuple[tuple[int, dict[str, tuple[int, ...]]], ...]:
        return tuple(
            (length, {key: tuple(found) for key, found in buckets.items()})
            for length, buckets in sorted(self._levels.items())
        )


class PathIndex:
    """Candidate route indexes for a path, ascending (route order)."""

    __slots__ = (
        "_all",
        "_exact",
        "_exact_folded",
        "_folded",
        "_prefix",
        "_prefix_folded",
    )

    def __init__(self, matches: Sequence[RouteMatch], *, scan_up_to: int = 4) -> None:
        """``scan_up_to``: with this many routes or fewer, every route is a
        candidate (testing a handful directly is cheaper than the lookups)."""
        self._all = tuple(range(len(matches))) if len(matches) <= scan_up_to else None
        exact: _Buckets = {}
        exact_folded: _Buckets = {}
        prefix = _PrefixLevels()
        prefix_folded = _PrefixLevels()
        for index, match in enumerate(matches):
            kind = match.path_kind
            if kind is PathMatchKind.SAFE_REGEX:  # case_sensitive does not apply (Envoy)
                prefix.add(regex_literal_prefix(match.path), index)
                continue
            sensitive = match.case_sensitive
            key = match.path if sensitive else match.path.lower()
            exacts = exact if sensitive else exact_folded
            prefixes = prefix if sensitive else prefix_folded
            if kind is PathMatchKind.PATH:
                exacts.setdefault(key, []).append(index)
            elif kind is PathMatchKind.PREFIX:
                prefixes.add(key, index)
            elif kind is PathMatchKind.PATH_SEPARATED_PREFIX:
                exacts.setdefault(key, []).append(index)
                prefixes.add(key + "/", index)
            else:  # the compiled matcher has refused it already; never silently skip
                raise ValueError(f"routes[{index}].match: unsupported path match {kind!r}")
        self._exact = {key: tuple(found) for key, found in exact.items()}
        self._exact_folded = {key: tuple(found) for key, found in exact_folded.items()}
        self._prefix = prefix.freeze()
        self._prefix_folded = prefix_folded.freeze()
        #: Whether any entry needs the lower-cased path.
        self._folded = bool(self._exact_folded or self._prefix_folded)

    def candidates(self, path: str) -> Sequence[int]:
        """Indexes of the routes whose path matcher may match ``path`` (no query)."""
        if self._all is not None:
            return self._all
        found: list[tuple[int, ...]] = []
        hit = self._exact.get(path)
        if hit is not None:
            found.append(hit)
        size = len(path)
        for length, buckets in self._prefix:
            if length > size:
                break
            hit = buckets.get(path[:length])
            if hit is not None:
                found.append(hit)
        if self._folded:
            folded = path.lower()
            hit = self._exact_folded.get(folded)
            if hit is not None:
                found.append(hit)
            size = len(folded)  # lower() may change the length (e.g. "İ")
            for length, buckets in self._prefix_folded:
                if length > size:
                    break
                hit = buckets.get(folded[:length])
                if hit is not None:
                    found.append(hit)
        if len(found) == 1:
            return found[0]
        if not found:
            return ()
        merged = [index for group in found for index in group]
        merged.sort()
        return merged
