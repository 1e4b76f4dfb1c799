"""The line of a YAML file that a config issue's field path points at, so an error names
the place to fix in an editor, not only the field:

    line_of(text, 2, "spec.http[0].timeout")   # 13: that field of the file's 2nd document

Only run when there is an error to show: the text is composed again (nodes keep their
marks). A path that leaves the document (a required field that is missing) points at
the deepest part that is there; a path that cannot be read at all gives None.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from controlplane.config.errors import ConfigIssue

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# As controlplane.config.fields writes paths: a.b, [3], ["odd key"].
_STEP = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def path_steps(path: str) -> list[str | int] | None:
    """``spec.http[0]["x.y"]`` as ``["spec", "http", 0, "x.y"]``; None if it is not a path."""
    steps: list[str | int] = []
    at = 0
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None or match.end() == at:
            return None
        plain, index, quoted = match.groups()
        if index is not None:
            steps.append(int(index))
        elif quoted is not None:
            steps.append(re.sub(r"\\(.)", r"\1", quoted))
        else:
            steps.append(plain)
        at = match.end()
    return steps


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(where the step is written, its value): a mapping's key names a field on its own
    line even when the value (a block list or mapping) starts on the next."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, value
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(step, int)
        and 0 <= step < len(node.value)
    ):
        return node.value[step], node.value[step]
    return None


def line_of(text: str, document: int, path: str) -> int | None:
    """The 1-based line of ``path`` in the ``document``-th (1-based) document of ``text``."""
    steps = path_steps(path)
    if steps is None or document < 1:
        return None
    node: yaml.Node | None = None
    try:
        for index, composed in enumerate(yaml.compose_all(text, Loader=_Loader), start=1):
            if index == document:
                node = composed
                break
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    written = node
    for step in steps:
        found = _child(node, step)
        if found is None:
            break
        written, node = found
    return int(written.start_mark.line) + 1


def issue_line(file: str, document: int | None, path: str) -> int | None:
    """The line of an issue found in a config file (None for the whole file, a request,
    a file gone since)."""
    if document is None:
        return None
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return line_of(text, document, path)


def with_line(issue: ConfigIssue) -> str:
    """``str(issue)``, plus ``(line N)`` when it points into a file that is there."""
    line = issue_line(issue.file, issue.document, issue.path)
    return str(issue) if line is None else f"{issue} (line {line})"
