"""Durations as Istio writes them: ``"1s"``, ``"500ms"``, ``"1.5s"``, ``"2m"``, ``"1h30m"``.

Istio's YAML takes Go-style durations (a sequence of decimal numbers with units
h, m, s, ms, us, ns) and accepts only whole milliseconds, at least 1ms where a
duration must be positive. The model stores seconds as a float.
"""

from __future__ import annotations

import re
from fractions import Fraction

from controlplane.config.fields import DocContext, Fields, describe

_UNITS: dict[str, Fraction] = {
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
    "us": Fraction(1, 1_000_000),
    "µs": Fraction(1, 1_000_000),
    "ns": Fraction(1, 1_000_000_000),
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_MILLISECOND = Fraction(1, 1000)
EXAMPLES = '"1s", "500ms", "1.5s", "2m", "1h"'


def parse_duration(text: str) -> Fraction | str:
    """The duration in seconds, or a message saying what is wrong with ``text``."""
    if text.startswith("-"):
        return f"duration {text!r} must not be negative"
    position = 0
    total = Fraction(0)
    while position < len(text):
        part = _PART.match(text, position)
        if part is None:
            return f"invalid duration {text!r} (use e.g. {EXAMPLES})"
        total += Fraction(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    if position == 0:
        return f"invalid duration {text!r} (use e.g. {EXAMPLES})"
    if total % _MILLISECOND:
        return f"duration {text!r} must be a whole number of milliseconds"
    return total


def as_duration(
    ctx: DocContext,
    path: str,
    value: object,
    *,
    minimum_ms: int = 1,
    allow_zero: bool = False,
) -> float | None:
    """``value`` as seconds; at least ``minimum_ms`` unless it is 0 and ``allow_zero``."""
    if not isinstance(value, str):
        ctx.error(path, f"must be a duration string like {EXAMPLES}, got {describe(value)}")
        return None
    parsed = parse_duration(value)
    if isinstance(parsed, str):
        ctx.error(path, parsed)
        return None
    if parsed == 0 and allow_zero:
        return 0.0
    if parsed < minimum_ms * _MILLISECOND:
        ctx.error(path, f"must be at least {minimum_ms}ms, got {value!r}")
        return None
    return float(parsed)


def duration(
    fields: Fields,
    key: str,
    *,
    required: bool = False,
    minimum_ms: int = 1,
    allow_zero: bool = False,
) -> float | None:
    """The duration field ``key`` of ``fields`` in seconds (None when absent or bad)."""
    value = fields.data.get(key)
    if value is None:
        if required:
            fields.ctx.error(fields.at(key), "is required")
        return None
    return as_duration(
        fields.ctx, fields.at(key), value, minimum_ms=minimum_ms, allow_zero=allow_zero
    )
