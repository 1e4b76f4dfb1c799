"""Reading typed fields out of parsed YAML, reporting every problem with its path.

Validators never raise on bad input: they report a :class:`ConfigIssue` to the
document's :class:`DocContext` and get ``None`` back, so one pass collects every
problem of a document. Paths use the user's spelling: ``spec.ports[0].number``,
``spec.labels["app.kubernetes.io/name"]``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.config.errors import ConfigIssue

Check = Callable[[str], "str | None"]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class DocContext:
    """Where issues of one YAML document go."""

    file: str
    document: int | None
    issues: list[ConfigIssue]

    def error(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.document, path, message))

    @property
    def count(self) -> int:
        """Issues so far; a validator compares before/after to know if it may build."""
        return len(self.issues)


def child(path: str, key: str) -> str:
    """The path of ``key`` inside the mapping at ``path``."""
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    quoted = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}[{quoted}]"


def item(path: str, index: int) -> str:
    """The path of element ``index`` of the list at ``path``."""
    return f"{path}[{index}]"


def describe(value: object) -> str:
    """A value's YAML type and text, for 'must be X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def as_string(ctx: DocContext, path: str, value: object, check: Check | None = None) -> str | None:
    """``value`` as a non-empty string that passes ``check``, else report and None."""
    if not isinstance(value, str):
        hint = " (quote it)" if isinstance(value, (bool, int, float)) else ""
        ctx.error(path, f"must be a string, got {describe(value)}{hint}")
        return None
    if not value:
        ctx.error(path, "must not be empty")
        return None
    problem = check(value) if check is not None else None
    if problem is not None:
        ctx.error(path, problem)
        return None
    return value


def as_integer(ctx: DocContext, path: str, value: object, minimum: int, maximum: int) -> int | None:
    """``value`` as an integer in ``[minimum, maximum]`` (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.error(path, f"must be an integer, got {describe(value)}")
        return None
    if not minimum <= value <= maximum:
        ctx.error(path, f"must be between {minimum} and {maximum}, got {value}")
        return None
    return value


def as_mapping(ctx: DocContext, path: str, value: object) -> dict[str, object] | None:
    """``value`` as a mapping whose keys are all strings."""
    if not isinstance(value, dict):
        ctx.error(path, f"must be a mapping, got {describe(value)}")
        return None
    result: dict[str, object] = {}
    for key, entry in value.items():
        if not isinstance(key, str):
            ctx.error(f"{path}[{key}]", f"keys must be strings, got {describe(key)}")
            continue
        result[key] = entry
    return result if len(result) == len(value) else None


class Fields:
    """A YAML mapping being validated, with its path and its document's context."""

    def __init__(self, ctx: DocContext, path: str, data: Mapping[str, object]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data

    @classmethod
    def of(cls, ctx: DocContext, path: str, value: object) -> Fields | None:
        mapping = as_mapping(ctx, path, value)
        return None if mapping is None else cls(ctx, path, mapping)

    def at(self, key: str) -> str:
        return child(self.path, key)

    def present(self, key: str) -> bool:
        """True when ``key`` is set to something other than null."""
        return self.data.get(key) is not None

    def _value(self, key: str, required: bool) -> object:
        value = self.data.get(key)
        if value is None and required:
            self.ctx.error(self.at(key), "is required")
        return value

    def reject_unknown(
        self,
        known: Collection[str],
        not_yet: Collection[str] = (),
        what: str = "this object",
        refused: Mapping[str, str] | None = None,
    ) -> None:
        """Report fields that are not supported yet, and fields nobody knows.

        ``refused`` maps fields Istio knows but meshlib refuses (deprecated ones,
        ones with a meshlib replacement) to the message that says what to use.
        """
        for key in self.data:
            if key in known:
                continue
            if refused is not None and key in refused:
                self.ctx.error(self.at(key), refused[key])
                continue
            if key in not_yet:
                self.ctx.error(self.at(key), "field is not supported yet")
                continue
            guess = difflib.get_close_matches(key, [*known, *not_yet], n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else f"; {what} has {', '.join(known)}"
            self.ctx.error(self.at(key), f"unknown field{hint}")

    def string(self, key: str, *, required: bool = False, check: Check | None = None) -> str | None:
        value = self._value(key, required)
        return None if value is None else as_string(self.ctx, self.at(key), value, check)

    def integer(
        self, key: str, *, minimum: int, maximum: int, required: bool = False
    ) -> int | None:
        value = self._value(key, required)
        if value is None:
            return None
        return as_integer(self.ctx, self.at(key), value, minimum, maximum)

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        value = self._value(key, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.ctx.error(self.at(key), f"must be true or false, got {describe(value)}")
            return None
        return value

    def number(
        self, key: str, *, minimum: float, maximum: float, required: bool = False
    ) -> float | None:
        """A number (integer or decimal) in ``[minimum, maximum]``, as a float."""
        value = self._value(key, required)
        if value is None:
            return None
        path = self.at(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.ctx.error(path, f"must be a number, got {describe(value)}")
            return None
        if not minimum <= value <= maximum:  # NaN fails this too
            self.ctx.error(path, f"must be between {minimum:g} and {maximum:g}, got {value}")
            return None
        return float(value)

    def percentage(self, key: str, *, required: bool = False) -> float | None:
        """Istio's ``Percent``: ``{value: 12.5}``, a float in [0, 100]."""
        fields = self.mapping(key, required=required)
        if fields is None:
            return None
        fields.reject_unknown(("value",), what="a percentage")
        return fields.number("value", minimum=0.0, maximum=100.0, required=True)

    def exclusive(self, *keys: str) -> bool:
        """Report when more than one of ``keys`` is set; True when at most one is."""
        present = [key for key in keys if self.present(key)]
        if len(present) <= 1:
            return True
        self.ctx.error(
            self.at(present[1]),
            f"cannot be combined with {present[0]} (set only one of {', '.join(keys)})",
        )
        return False

    def mapping(self, key: str, *, required: bool = False) -> Fields | None:
        value = self._value(key, required)
        return None if value is None else Fields.of(self.ctx, self.at(key), value)

    def items(
        self, key: str, *, required: bool = False, non_empty: bool = False
    ) -> list[tuple[str, object]] | None:
        """The elements of a list field, each with its path."""
        value = self._value(key, required)
        if value is None:
            return None
        path = self.at(key)
        if not isinstance(value, list):
            self.ctx.error(path, f"must be a list, got {describe(value)}")
            return None
        if non_empty and not value:
            self.ctx.error(path, "must not be empty")
            return None
        return [(item(path, index), element) for index, element in enumerate(value)]

    def string_map(
        self,
        key: str,
        *,
        key_check: Check | None = None,
        value_check: Check | None = None,
        allow_empty_values: bool = False,
    ) -> Mapping[str, str] | None:
        """A mapping of strings to strings, e.g. labels."""
        fields = self.mapping(key)
        if fields is None:
            return None
        before = self.ctx.count
        result: dict[str, str] = {}
        for name, value in fields.data.items():
            path = fields.at(name)
            problem = key_check(name) if key_check is not None else None
            if problem is not None:
                self.ctx.error(path, problem)
            if allow_empty_values and value == "":
                result[name] = ""
                continue
            text = as_string(self.ctx, path, value, value_check)
            if text is not None:
                result[name] = text
        return MappingProxyType(result) if self.ctx.count == before else None

    def choice(
        self,
        key: str,
        *,
        supported: Collection[str],
        not_yet: Collection[str] = (),
        what: str = "value",
    ) -> str | None:
        """One of ``supported``; values in ``not_yet`` get 'not supported yet'."""
        value = self._value(key, False)
        if value is None:
            return None
        text = as_string(self.ctx, self.at(key), value)
        if text is None:
            return None
        if text in supported:
            return text
        choices = ", ".join(supported)
        if text in not_yet:
            self.ctx.error(self.at(key), f"{what} {text} is not supported yet (use {choices})")
        else:
            self.ctx.error(self.at(key), f"unknown {what} {text!r} (use {choices})")
        return None
