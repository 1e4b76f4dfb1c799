"""The config in force is two layers validated as one: the ``--config`` files (read-only
here, GitOps owns them) and the resources applied through the API (kept in the store).

:func:`compose` runs the union through the same validation as a folder of files
(:func:`controlplane.config.loader.build_config`), in a fixed order: the files in load
order, then the stored resources oldest change first, then a request's documents. A
stored resource is labelled ``api:KIND/NAMESPACE/NAME`` where a file would name its path
(``api:VirtualService/default/reviews#1``); a request's documents are ``request#N``. A name
defined by a file and by the store at once is refused at the file's document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.config import ConfigIssue
from controlplane.config.loader import build_config
from controlplane.config.resource import DEFAULT_NAMESPACE
from controlplane.config.yaml_files import Document, config_files, read_documents
from controlplane.model import MeshConfig
from controlplane.store import ResourceKey, StoredResource

REQUEST = "request"
STORED_PREFIX = "api:"


@dataclass(frozen=True, slots=True)
class FileRead:
    """The documents of the ``--config`` files, their load order, and read problems."""

    documents: tuple[Document, ...] = ()
    order: tuple[str, ...] = ()
    issues: tuple[ConfigIssue, ...] = ()

    def by_key(self) -> dict[ResourceKey, Document]:
        """Each well-formed document by its (kind, namespace, name)."""
        found: dict[ResourceKey, Document] = {}
        for document in self.documents:
            key = document_key(document.data)
            if key is not None:
                found.setdefault(key, document)
        return found


NO_FILES = FileRead()


@dataclass(frozen=True, slots=True)
class Layers:
    """The two sources of config, as last taken together."""

    files: FileRead = NO_FILES
    stored: Mapping[ResourceKey, StoredResource] = field(default_factory=dict)
    revision: int = 0  # the store's, as of ``stored``


def read_files(path: Path | None) -> FileRead:
    """Read (not validate) the config files at ``path``; None: no files."""
    if path is None:
        return NO_FILES
    issues: list[ConfigIssue] = []
    files = config_files(path, issues)
    documents = [doc for file in files for doc in read_documents(file, issues)]
    return FileRead(tuple(documents), tuple(str(file) for file in files), tuple(issues))


def document_key(data: object) -> ResourceKey | None:
    """(kind, namespace, name) of a raw document whose envelope has string values there."""
    if not isinstance(data, Mapping):
        return None
    kind, metadata = data.get("kind"), data.get("metadata")
    if not isinstance(kind, str) or not isinstance(metadata, Mapping):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return ResourceKey(kind, namespace or DEFAULT_NAMESPACE, name)


def stored_label(key: ResourceKey) -> str:
    return f"{STORED_PREFIX}{key.kind}/{key.namespace}/{key.name}"


def oldest_first(stored: Mapping[ResourceKey, StoredResource]) -> list[StoredResource]:
    return sorted(stored.values(), key=lambda r: (r.version, r.key))


def compose(
    files: FileRead,
    stored: Mapping[ResourceKey, StoredResource],
    requested: Sequence[Document] = (),
) -> MeshConfig:
    """Validate files + stored (+ a request's documents, which replace stored ones of the
    same key) as one config; raises :class:`ConfigError` listing every issue."""
    replaced = {document_key(document.data) for document in requested}
    kept = [r for r in oldest_first(stored) if r.key not in replaced]
    clashes = list(_clashes(files, kept))
    if clashes:
        clashing = {key for key, _ in clashes}
        kept = [r for r in kept if r.key not in clashing]
    stored_documents = [Document(stored_label(r.key), 1, r.document) for r in kept]
    return build_config(
        [*files.documents, *stored_documents, *requested],
        [*files.issues, *(issue for _, issue in clashes)],
        order=[*files.order, *(d.file for d in stored_documents), REQUEST],
    )


def _clashes(
    files: FileRead, stored: Sequence[StoredResource]
) -> Iterator[tuple[ResourceKey, ConfigIssue]]:
    """A file document whose name is also a stored resource's."""
    by_key = {resource.key: resource for resource in stored}
    for document in files.documents:
        key = document_key(document.data)
        resource = by_key.get(key) if key is not None else None
        if key is None or resource is None:
            continue
        yield (
            key,
            ConfigIssue(
                document.file,
                document.index,
                "metadata.name",
                f"{key} is also stored, applied through the API (resourceVersion "
                f"{resource.version}): a name lives in the files or in the store, not both; "
                f"rename it here, or remove the stored one (meshctl delete {key.kind} "
                f"{key.name} -n {key.namespace})",
            ),
        )
