"""Errors of the config language: every problem of a load, each with its place.

A load either succeeds as a whole or raises one :class:`ConfigError` that lists
every :class:`ConfigIssue` found (file, YAML document, field path, message), so
a user fixes all of them in one edit instead of one per restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue"]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the config.

    ``document`` is the 1-based index of the YAML document in ``file`` (None when
    the problem is about the file itself); ``path`` is the field path as the user
    wrote it (Istio's camelCase, list indexes in brackets), "" for the document.
    """

    file: str
    document: int | None
    path: str
    message: str

    @property
    def location(self) -> str:
        """``FILE#DOC``, or ``FILE`` when the issue is about the whole file."""
        return self.file if self.document is None else f"{self.file}#{self.document}"

    def __str__(self) -> str:
        if self.path:
            return f"{self.location}: {self.path}: {self.message}"
        return f"{self.location}: {self.message}"


class ConfigError(Exception):
    """The config was refused; ``issues`` lists every problem, one per line in ``str()``."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
