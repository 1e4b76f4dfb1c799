"""RE2 regular expressions for xDS ``safe_regex`` matchers.

Envoy and gRPC evaluate ``safe_regex`` with RE2 (linear time, no backtracking),
so meshlib does too: Python's ``re`` accepts patterns RE2 rejects and can blow
up on hostile input. The ``google-re2`` distribution provides the ``re2`` module.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, cast


class CompiledRegex(Protocol):
    """The part of a compiled RE2 pattern meshlib uses."""

    def fullmatch(self, text: str) -> object | None: ...


class RegexUnavailableError(ImportError):
    """The ``re2`` module (distribution ``google-re2``) is not installed."""


def _load_re2() -> Any:
    try:
        return importlib.import_module("re2")
    except ImportError as exc:
        raise RegexUnavailableError(
            "safe_regex matchers need RE2: install the 'google-re2' distribution "
            "(pip install google-re2)"
        ) from exc


def compile_re2(
    pattern: str, *, ignore_case: bool = False, where: str = "safe_regex"
) -> CompiledRegex:
    """Compile ``pattern`` with RE2; raise ValueError naming ``where`` if RE2 rejects it."""
    re2 = _load_re2()
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return cast(CompiledRegex, re2.compile(pattern, options))
    except Exception as exc:  # re2.error is not a stable public name across versions
        raise ValueError(f"{where}: invalid RE2 pattern {pattern!r}: {exc}") from exc


class CompiledSubstitution:
    """``pattern`` → ``substitution`` applied to every match, as RE2's GlobalReplace does.

    Envoy's ``regex_rewrite`` and hash-policy ``regex_rewrite`` use RE2 rewrite
    strings: ``\\0``-``\\9`` insert a group, ``\\\\`` a backslash; anything else is
    literal. Python's ``re`` replacement syntax differs, so the rewrite string is
    parsed here once and applied through a callable.
    """

    __slots__ = ("_parts", "_regex")

    def __init__(self, pattern: str, substitution: str, where: str) -> None:
        self._regex: Any = cast(Any, compile_re2(pattern, where=f"{where}.pattern"))
        groups: int = self._regex.groups
        self._parts = _parse_rewrite(substitution, groups, f"{where}.substitution")

    def apply(self, text: str) -> str:
        """``text`` with every non-overlapping match replaced."""
        parts = self._parts

        def expand(match: Any) -> str:
            return "".join(p if isinstance(p, str) else (match.group(p) or "") for p in parts)

        result: str = self._regex.sub(expand, text)
        return result


def _parse_rewrite(substitution: str, groups: int, where: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(substitution):
        char = substitution[i]
        if char != "\\":
            literal.append(char)
            i += 1
            continue
        if i + 1 >= len(substitution):
            raise ValueError(f"{where}: trailing backslash in {substitution!r}")
        escaped = substitution[i + 1]
        if escaped == "\\":
            literal.append("\\")
        elif escaped.isdigit():
            group = int(escaped)
            if group > groups:
                raise ValueError(
                    f"{where}: \\{group} in {substitution!r} but the pattern has {groups} groups"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(group)
        else:
            raise ValueError(f"{where}: invalid escape \\{escaped} in {substitution!r}")
        i += 2
    if literal:
        parts.append("".join(literal))
    return tuple(parts)
