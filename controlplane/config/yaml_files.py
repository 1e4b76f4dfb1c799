"""Finding config files and splitting them into YAML documents.

A folder means every ``*.yaml`` / ``*.yml`` file below it, sorted by path, skipping
hidden files and folders (editor swap files, ``.git``, Kubernetes' ``..data``
mounts). Files are parsed with libyaml (the C loader) and the result of each file is
kept with its bytes, so a reload re-parses only the files whose bytes changed.
Problems (missing path, unreadable file, YAML syntax, duplicate keys,
a file with no document at all) are reported as issues with the file and, where
known, document and line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.config.errors import ConfigIssue

YAML_SUFFIXES = (".yaml", ".yml")
# A truncated save or a config-management hiccup looks exactly like this, and
# taking it would remove every resource of the file from every client.
EMPTY_FILE_MESSAGE = (
    "file holds no resources (it is empty or only comments): refused, as a truncated "
    "save looks the same; to remove its resources, delete the file"
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Document:
    """One non-empty YAML document: its file, its 1-based index there, its data."""

    file: str
    index: int
    data: object


# libyaml's parser when PyYAML was built with it (about ten times faster), else pure Python.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys instead of keeping the last one.

    Keys merged in with ``<<`` may be overridden (that is what merging is for);
    only keys written twice in the same mapping are an error.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *base` may be overridden by explicit keys
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def config_files(path: Path, issues: list[ConfigIssue]) -> list[Path]:
    """The files a config path stands for, in load order (path order, folder by
    folder, as `kubectl apply -R` walks: `a/z.yaml` before `a.yaml`)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        try:
            return sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.suffix in YAML_SUFFIXES
                and candidate.is_file()
                and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
        except OSError as exc:
            where = exc.filename or path
            issues.append(ConfigIssue(str(where), None, "", f"cannot list folder: {exc.strerror}"))
            return []
    message = "does not exist" if not path.exists() else "is neither a file nor a folder"
    issues.append(ConfigIssue(str(path), None, "", f"config path {message}"))
    return []


def read_documents(file: Path, issues: list[ConfigIssue]) -> list[Document]:
    """Every non-empty document of ``file``; a syntax error ends the file with an issue,
    and so does a file without any document (empty, or only comments and ``---``)."""
    name = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        issues.append(ConfigIssue(name, None, "", f"cannot read file: {exc.strerror or exc}"))
        return []
    with _PARSED_LOCK:
        cached = _PARSED.get(name)
    if cached is not None and cached[0] == raw:
        issues.extend(cached[2])
        return list(cached[1])
    found: list[ConfigIssue] = []
    documents = documents_in(name, raw, found)
    issues.extend(found)
    with _PARSED_LOCK:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[name] = (raw, tuple(documents), tuple(found))
    return documents


# file name -> (its bytes, their documents, their issues): the parse of each file's
# latest bytes. Documents are never modified after parsing, so they are shared.
_PARSED: dict[str, tuple[bytes, tuple[Document, ...], tuple[ConfigIssue, ...]]] = {}
_PARSED_MAX = 10_000
_PARSED_LOCK = threading.Lock()


def documents_in(name: str, raw: bytes, issues: list[ConfigIssue]) -> list[Document]:
    """Every non-empty document of ``raw`` (the bytes of file ``name``), as
    :func:`read_documents` reads a file (also for text from stdin)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issues.append(ConfigIssue(name, None, "", f"not UTF-8 text (byte {exc.start})"))
        return []
    documents: list[Document] = []
    index = 0
    try:
        for index, data in enumerate(_load_all(text), start=1):
            if data is not None:
                documents.append(Document(name, index, data))
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(name, index + 1, "", _syntax_message(exc)))
        return documents
    if not documents:
        issues.append(ConfigIssue(name, None, "", EMPTY_FILE_MESSAGE))
    return documents


def _load_all(text: str) -> Iterator[object]:
    loader = _StrictLoader(text)
    try:
        while loader.check_data():
            yield loader.get_data()
    finally:
        loader.dispose()


def _syntax_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return f"invalid YAML: {problem}"
    return f"invalid YAML: {exc}"
