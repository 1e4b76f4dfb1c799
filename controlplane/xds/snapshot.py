"""An immutable, versioned set of resources for one node.

Resources are packed into ``Any`` once, when the snapshot is built, so every
stream that sends them shares the bytes. A type's version is a hash of its
names and deterministic serialized bytes: the same resources always give the
same version, a change always gives a new one. Each resource also has its own
version (a hash of its bytes), for incremental xDS: a client is sent only the
resources whose version differs from the one it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.xds.errors import SnapshotError
from controlplane.xds.typeurls import SEND_ORDER

VERSION_LENGTH = 16  # hex digits of sha256 kept


@dataclass(frozen=True, slots=True)
class TypeSnapshot:
    """All resources of one type, packed, with their version."""

    version: str
    resources: Mapping[str, any_pb2.Any]  # name -> packed resource, sorted by name
    resource_versions: Mapping[str, str]  # name -> that resource's own version

    def names(self) -> frozenset[str]:
        return frozenset(self.resources)


EMPTY_TYPE = TypeSnapshot(
    version="", resources=MappingProxyType({}), resource_versions=MappingProxyType({})
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Per type URL, the resources a node may ask for."""

    types: Mapping[str, TypeSnapshot]
    messages: Mapping[str, Mapping[str, Message]]  # the unpacked originals

    @classmethod
    def from_resources(cls, resources: Mapping[str, Mapping[str, Message]]) -> Snapshot:
        """Pack and version ``resources`` (type URL -> name -> message).

        Every known type gets an entry, empty when ``resources`` lacks it.
        Raises :class:`SnapshotError` when a message is not of its type URL.
        """
        type_urls = sorted(set(SEND_ORDER) | set(resources))
        types = {url: _type_snapshot(url, resources.get(url, {})) for url in type_urls}
        frozen = {url: MappingProxyType(dict(resources.get(url, {}))) for url in type_urls}
        return cls(types=MappingProxyType(types), messages=MappingProxyType(frozen))

    def get(self, type_url: str) -> TypeSnapshot:
        return self.types.get(type_url, EMPTY_TYPE)

    def version(self, type_url: str) -> str:
        return self.get(type_url).version

    def versions(self) -> dict[str, str]:
        return {url: t.version for url, t in self.types.items()}


def _type_snapshot(type_url: str, messages: Mapping[str, Message]) -> TypeSnapshot:
    digest = hashlib.sha256(type_url.encode())
    packed: dict[str, any_pb2.Any] = {}
    versions: dict[str, str] = {}
    for name in sorted(messages):
        message = messages[name]
        if message.DESCRIPTOR.full_name != type_url.rsplit("/", 1)[-1]:
            raise SnapshotError(
                f"resource {name!r} is a {message.DESCRIPTOR.full_name}, not {type_url}"
            )
        resource = any_pb2.Any()
        resource.Pack(message, deterministic=True)
        packed[name] = resource
        versions[name] = hashlib.sha256(resource.value).hexdigest()[:VERSION_LENGTH]
        digest.update(b"\0%d:%s\0%d:" % (len(name), name.encode(), len(resource.value)))
        digest.update(resource.value)
    return TypeSnapshot(
        version=digest.hexdigest()[:VERSION_LENGTH],
        resources=MappingProxyType(packed),
        resource_versions=MappingProxyType(versions),
    )
