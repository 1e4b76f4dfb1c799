"""Config through the API: apply, get and delete resources kept in the store.

An apply is validated exactly as files are (the union of the ``--config`` files, the
stored resources and the request, :func:`controlplane.layers.compose`), then translated
on trial, then committed in one store transaction: all or nothing. Documents equal to
what is stored are left alone (no write, no new resourceVersion, nothing pushed). A
document carrying ``metadata.resourceVersion`` is written only over that version (409
otherwise), and every write is a compare-and-swap on the version read, so a concurrent
writer is never overwritten unseen. Resources defined by a ``--config`` file are
read-only here (409, naming the file).

Refusals raise :class:`ConfigRefused` with the HTTP status, a message, the field
(``documents[N].PATH`` for a request's document) and the config issues.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from controlplane.config import ConfigError, ConfigIssue
from controlplane.config.resource import DEFAULT_NAMESPACE
from controlplane.config.yaml_files import Document
from controlplane.kinds import UnknownKind, canonical_kind
from controlplane.layers import REQUEST, Layers, compose, document_key
from controlplane.model import MeshConfig
from controlplane.store import (
    ABSENT,
    DeleteResource,
    PutResource,
    ResourceKey,
    Store,
    StoredResource,
    StoreError,
    VersionConflict,
    Write,
)

log = structlog.get_logger(__name__)

SOURCE_ANNOTATION = "meshlib.dev/source"
MAX_DOCUMENTS = 1000
_VERSION = "metadata.resourceVersion"


class ConfigRefused(Exception):
    """A request the API refuses; nothing was stored."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        issues: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.issues = list(issues)


class ConfigHost(Protocol):
    """What the control plane lends the API: its layers, its trial translation, and
    the place to put a new config in force."""

    def layers(self) -> Layers:
        """The files and stored resources in force."""

    def check_translation(self, config: MeshConfig) -> None:
        """Raise ConfigError when ``config`` could not be served (names ``request#N``)."""

    def install(self, layers: Layers, config: MeshConfig | ConfigError) -> None:
        """Serve ``config`` built from ``layers``; a ConfigError: ``layers.stored`` is what
        the store holds now, but it clashes with files that changed meanwhile (say why,
        keep serving what is in force)."""


@dataclass(frozen=True, slots=True)
class _Requested:
    """One document of an apply, as prepared for validation and storage."""

    document: Document  # labelled request#N, without resourceVersion
    expected: int | None  # the resourceVersion it carried
    issues: tuple[ConfigIssue, ...] = field(default=())

    @property
    def key(self) -> ResourceKey:
        key = document_key(self.document.data)
        assert key is not None, "only asked of documents that validated"
        return key

    @property
    def data(self) -> Mapping[str, Any]:
        assert isinstance(self.document.data, Mapping), "only asked of documents that validated"
        return self.document.data


def field_of(issue: ConfigIssue) -> str:
    """The JSON field an issue is about: ``documents[N].PATH`` for a request's document."""
    if issue.file != REQUEST or issue.document is None:
        return issue.path or issue.location
    where = f"documents[{issue.document - 1}]"
    if not issue.path:
        return where
    return where + (issue.path if issue.path.startswith("[") else "." + issue.path)


def issue_json(issue: ConfigIssue) -> dict[str, Any]:
    return {
        "location": issue.location,
        "file": issue.file,
        "document": issue.document,
        "path": issue.path,
        "message": issue.message,
        "field": field_of(issue),
    }


def invalid(error: ConfigError) -> ConfigRefused:
    first = error.issues[0] if error.issues else None
    return ConfigRefused(
        400,
        str(error),
        field_of(first) if first is not None else None,
        [issue_json(issue) for issue in error.issues],
    )


def _expected_version(value: object) -> int | str:
    """A resourceVersion as sent (a decimal string, or a number): the int, or what is wrong."""
    if isinstance(value, str) and value.isdecimal() and value.isascii():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return (
        f'must be a resourceVersion as get shows it (a positive number such as "12"), got {value!r}'
    )


def prepare(index: int, data: object) -> _Requested:
    """Document ``index`` (1-based) of a request: ``resourceVersion`` taken out, the
    namespace filled in, ``status`` dropped: what is stored, and compared with the store."""
    if not isinstance(data, Mapping) or not isinstance(data.get("metadata"), Mapping):
        return _Requested(Document(REQUEST, index, data), None)  # validation says what is wrong
    metadata = dict(data["metadata"])
    expected: int | None = None
    issues: tuple[ConfigIssue, ...] = ()
    if "resourceVersion" in metadata:
        checked = _expected_version(metadata.pop("resourceVersion"))
        if isinstance(checked, str):
            issues = (ConfigIssue(REQUEST, index, _VERSION, checked),)
        else:
            expected = checked
    if metadata.get("namespace") is None:
        metadata["namespace"] = DEFAULT_NAMESPACE
    stored = {key: value for key, value in data.items() if key != "status"}
    stored["metadata"] = metadata
    return _Requested(Document(REQUEST, index, stored), expected, issues)


def request_documents(body: object) -> list[object]:
    """The documents of an apply body: a JSON list of resources, or ``{"documents": [...]}``."""
    if isinstance(body, Mapping):
        unknown = sorted(str(key) for key in body if key != "documents")
        if unknown:
            raise ConfigRefused(400, f"{unknown[0]}: unknown field (known: documents)", unknown[0])
        if "documents" not in body:
            raise ConfigRefused(400, "documents: is required (a list of resources)", "documents")
        body = body["documents"]
        where = "documents"
    else:
        where = "body"
    if not isinstance(body, list):
        raise ConfigRefused(
            400, f'{where}: expected a list of resources or {{"documents": [...]}}', where
        )
    if not body:
        raise ConfigRefused(400, f"{where}: no documents: nothing to apply", where)
    if len(body) > MAX_DOCUMENTS:
        raise ConfigRefused(400, f"{where}: at most {MAX_DOCUMENTS} documents per apply", where)
    return body


def _duplicates(requested: Sequence[_Requested]) -> list[ConfigIssue]:
    first: dict[ResourceKey, int] = {}
    issues = []
    for item in requested:
        key = document_key(item.document.data)
        if key is None:
            continue
        earlier = first.setdefault(key, item.document.index)
        if earlier != item.document.index:
            issues.append(
                ConfigIssue(
                    REQUEST,
                    item.document.index,
                    "metadata.name",
                    f"{key} is also document {earlier} of this request",
                )
            )
    return issues


class AppliedConfig:
    """The API's config operations over the store and the control plane's layers."""

    def __init__(self, store: Store, host: ConfigHost) -> None:
        self._store = store
        self._host = host
        self._lock = asyncio.Lock()

    # --- reading -------------------------------------------------------------

    def list_resources(self, kind: str | None, namespace: str | None) -> dict[str, Any]:
        """``{"items": [...]}`` of one kind (None: all) in one namespace (None: all)."""
        wanted = None if kind is None else _kind(kind)
        layers = self._host.layers()
        items = [
            (key, view)
            for key, view in _views(layers)
            if (wanted is None or key.kind == wanted)
            and (namespace is None or key.namespace == namespace)
        ]
        items.sort(key=lambda pair: pair[0])
        return {"items": [view for _, view in items]}

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        key = ResourceKey(_kind(kind), namespace, name)
        for found, view in _views(self._host.layers()):
            if found == key:
                return view
        raise ConfigRefused(404, f"{key} not found", "name")

    # --- writing -------------------------------------------------------------

    async def apply(self, body: object) -> dict[str, Any]:
        """Apply a request's documents as one change; the per-resource outcome."""
        requested = [prepare(i, d) for i, d in enumerate(request_documents(body), start=1)]
        issues = [issue for item in requested for issue in item.issues]
        issues += _duplicates(requested)
        if issues:
            raise invalid(ConfigError(issues))
        async with self._lock:
            layers = self._host.layers()
            owned = layers.files.by_key()
            for item in requested:
                key = document_key(item.document.data)
                if key is not None:
                    _refuse_file_owned(owned, key, "changed")
                    _check_expected(key, item.expected, layers.stored.get(key))
            documents = [item.document for item in requested]
            candidate = await _compose(layers, layers.stored, documents)
            writes: list[Write] = []
            outcome: list[tuple[ResourceKey, str]] = []
            for item in requested:
                key = item.key
                current = layers.stored.get(key)
                if current is not None and current.document == item.data:
                    outcome.append((key, "unchanged"))
                    continue
                expected = ABSENT if current is None else current.version
                writes.append(PutResource(key, item.data, expected))
                outcome.append((key, "created" if current is None else "configured"))
            if writes:
                self._check_translation(candidate)
            stored = await self._commit(layers, writes)
        items = [
            {
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "resourceVersion": str(stored[key].version),
                "result": result,
            }
            for key, result in outcome
        ]
        return {"items": items, "revision": self._host.layers().revision}

    async def delete(
        self, kind: str, namespace: str, name: str, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Remove a stored resource; refused when it is file-owned, absent or not at
        ``resource_version`` (when given), or when the config without it is not valid."""
        key = ResourceKey(_kind(kind), namespace, name)
        expected: int | None = None
        if resource_version is not None:
            checked = _expected_version(resource_version)
            if isinstance(checked, str):
                raise ConfigRefused(400, f"resourceVersion: {checked}", "resourceVersion")
            expected = checked
        async with self._lock:
            layers = self._host.layers()
            _refuse_file_owned(layers.files.by_key(), key, "deleted")
            current = layers.stored.get(key)
            if current is None:
                raise ConfigRefused(404, f"{key} not found", "name")
            _check_expected(key, expected, current)
            remaining = {k: r for k, r in layers.stored.items() if k != key}
            self._check_translation(await _compose(layers, remaining, ()))
            await self._commit(layers, [DeleteResource(key, current.version)])
        deleted = {"kind": key.kind, "namespace": key.namespace, "name": key.name}
        return {"deleted": deleted, "revision": self._host.layers().revision}

    def _check_translation(self, config: MeshConfig) -> None:
        try:
            self._host.check_translation(config)
        except ConfigError as exc:
            raise invalid(exc) from exc

    async def _commit(
        self, layers: Layers, writes: Sequence[Write]
    ) -> Mapping[ResourceKey, StoredResource]:
        """Write, then put the new stored layer in force with the files in force now."""
        if not writes:
            return layers.stored
        try:
            revision = await self._store.commit(writes)
        except VersionConflict as exc:
            raise ConfigRefused(409, str(exc), _VERSION) from exc
        except StoreError as exc:
            log.error("store_commit_failed", error=str(exc))
            raise ConfigRefused(503, f"the store could not write: {exc}") from exc
        # The files, and on a shared store other replicas' commits, may have come in
        # while we waited: build on the layers in force now.
        now = self._host.layers()
        stored = dict(now.stored)
        for write in writes:
            if isinstance(write, PutResource):
                stored[write.key] = StoredResource(write.key, write.document, revision)
            else:
                stored.pop(write.key, None)
        new_layers = Layers(now.files, stored, max(revision, now.revision))
        try:
            config: MeshConfig | ConfigError = compose(now.files, stored)
        except ConfigError as exc:
            log.error("applied_config_conflicts_with_files", error=str(exc))
            config = exc
        self._host.install(new_layers, config)
        log.info("config_applied", revision=revision, writes=len(writes))
        return stored


async def _compose(
    layers: Layers,
    stored: Mapping[ResourceKey, StoredResource],
    requested: Sequence[Document],
) -> MeshConfig:
    try:
        return await asyncio.to_thread(compose, layers.files, stored, requested)
    except ConfigError as exc:
        raise invalid(exc) from exc


def _kind(name: str) -> str:
    try:
        return canonical_kind(name)
    except UnknownKind as exc:
        raise ConfigRefused(400, f"kind: {exc}", "kind") from exc


def _refuse_file_owned(owned: Mapping[ResourceKey, Document], key: ResourceKey, what: str) -> None:
    document = owned.get(key)
    if document is not None:
        raise ConfigRefused(
            409,
            f"{key} is defined by the config file {document.file}#{document.index} "
            f"(--config): it cannot be {what} through the API; edit the file instead",
            "metadata.name",
        )


def _check_expected(key: ResourceKey, expected: int | None, current: StoredResource | None) -> None:
    if expected is None:
        return
    actual = None if current is None else current.version
    if actual != expected:
        raise ConfigRefused(409, str(VersionConflict(key, expected, actual)), _VERSION)


def _views(layers: Layers) -> list[tuple[ResourceKey, dict[str, Any]]]:
    """Every resource as ``get`` shows it: stored ones with their resourceVersion, file
    ones with their ``meshlib.dev/source`` annotation (``FILE#DOC``)."""
    views: list[tuple[ResourceKey, dict[str, Any]]] = []
    for key, document in layers.files.by_key().items():
        assert isinstance(document.data, Mapping)  # by_key keeps resources only
        view = copy.deepcopy(dict(document.data))
        metadata = view["metadata"] = dict(view["metadata"])
        metadata["namespace"] = key.namespace
        annotations = metadata.get("annotations")
        metadata["annotations"] = {
            **(annotations if isinstance(annotations, Mapping) else {}),
            SOURCE_ANNOTATION: f"{document.file}#{document.index}",
        }
        views.append((key, view))
    for key, resource in layers.stored.items():
        view = copy.deepcopy(dict(resource.document))
        view["metadata"] = {**view["metadata"], "resourceVersion": str(resource.version)}
        views.append((key, view))
    return views
