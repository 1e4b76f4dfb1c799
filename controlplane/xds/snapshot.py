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
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.xds.errors import SnapshotError
from controlplane.xds.typeurls import SEND_ORDER

VERSION_LENGTH = 16  # hex digits of sha256 kept

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class TypeSnapshot:
    """All resources of one type, packed, with their version."""

    version: str
    resources: Mapping[str, any_pb2.Any]  # name -> packed resource, sorted by name
    resource_versions: Mapping[str, str]  # name -> that resource's own version
    # names -> content key (see content_key), filled as streams ask
    _content_keys: dict[tuple[str, ...], str] = field(
        default_factory=dict, compare=False, repr=False
    )
    # (type URL, names) -> encoded state-of-the-world response (see sotw_response)
    _encoded: dict[tuple[str, tuple[str, ...]], bytes] = field(
        default_factory=dict, compare=False, repr=False
    )

    def names(self) -> frozenset[str]:
        return frozenset(self.resources)

    def sotw_response(self, type_url: str, names: tuple[str, ...], nonce: str) -> bytes:
        """A serialized DiscoveryResponse carrying ``names``: encoded once per names and
        shared by every stream that sends them; only the nonce is per stream (a
        field appended to the shared bytes, which protobuf parsers merge)."""
        key = (type_url, names)
        body = self._encoded.get(key)
        if body is None:
            response = discovery_pb2.DiscoveryResponse(
                version_info=self.version,
                type_url=type_url,
                resources=[self.resources[name] for name in names],
            )
            body = self._encoded[key] = response.SerializeToString(deterministic=True)
        return body + _nonce_field(nonce)

    def content_key(self, names: tuple[str, ...]) -> str:
        """What a client holding ``names`` (sorted) of this type holds: the type's
        version for all of them, else a hash of their own versions. A change to
        other resources leaves it alone, so their watchers only are pushed."""
        key = self._content_keys.get(names)
        if key is None:
            if len(names) == len(self.resources):
                key = self.version
            else:
                digest = hashlib.sha256()
                for name in names:
                    version = self.resource_versions[name]
                    digest.update(b"%s\0%s\0" % (name.encode(), version.encode()))
                key = digest.hexdigest()[:VERSION_LENGTH]
            self._content_keys[names] = key
        return key


EMPTY_TYPE = TypeSnapshot(
    version="", resources=MappingProxyType({}), resource_versions=MappingProxyType({})
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Per type URL, the resources a node may ask for."""

    types: Mapping[str, TypeSnapshot]
    messages: Mapping[str, Mapping[str, Message]]  # the unpacked originals
    # Facts read from the messages, worked out once for every stream that asks (see derived)
    _derived: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_resources(
        cls, resources: Mapping[str, Mapping[str, Message]], previous: Snapshot | None = None
    ) -> Snapshot:
        """Pack and version ``resources`` (type URL -> name -> message).

        Every known type gets an entry, empty when ``resources`` lacks it.
        Raises :class:`SnapshotError` when a message is not of its type URL.
        A message that is the very object ``previous`` holds under its name (an
        incremental translation keeps what it did not rebuild) reuses its packing.
        """
        type_urls = sorted(set(SEND_ORDER) | set(resources))
        types = {
            url: _type_snapshot(
                url,
                resources.get(url, {}),
                previous.messages.get(url, {}) if previous is not None else {},
                previous.get(url) if previous is not None else EMPTY_TYPE,
            )
            for url in type_urls
        }
        frozen = {url: MappingProxyType(dict(resources.get(url, {}))) for url in type_urls}
        return cls(types=MappingProxyType(types), messages=MappingProxyType(frozen))

    def get(self, type_url: str) -> TypeSnapshot:
        return self.types.get(type_url, EMPTY_TYPE)

    def version(self, type_url: str) -> str:
        return self.get(type_url).version

    def versions(self) -> dict[str, str]:
        return {url: t.version for url, t in self.types.items()}

    def derived(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``, once per snapshot and ``key``: what every stream sent these
        resources would otherwise work out again from the same messages."""
        try:
            return cast(_T, self._derived[key])
        except KeyError:
            value = self._derived[key] = compute()
            return value


def _type_snapshot(
    type_url: str,
    messages: Mapping[str, Message],
    before: Mapping[str, Message],
    before_packed: TypeSnapshot,
) -> TypeSnapshot:
    digest = hashlib.sha256(type_url.encode())
    packed: dict[str, any_pb2.Any] = {}
    versions: dict[str, str] = {}
    for name in sorted(messages):
        message = messages[name]
        if before.get(name) is message:  # checked and packed then: the same bytes
            resource = packed[name] = before_packed.resources[name]
            versions[name] = before_packed.resource_versions[name]
        else:
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


_NONCE_TAG = b"\x2a"  # DiscoveryResponse.nonce: field 5, length-delimited


def _nonce_field(nonce: str) -> bytes:
    data = nonce.encode()
    size = len(data)
    prefix = bytearray()
    while size > 0x7F:
        prefix.append(size & 0x7F | 0x80)
        size >>= 7
    prefix.append(size)
    return _NONCE_TAG + bytes(prefix) + data
