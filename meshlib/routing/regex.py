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
