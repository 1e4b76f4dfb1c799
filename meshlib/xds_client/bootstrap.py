"""The gRPC xDS bootstrap: where the control plane is and who this node is.

One file serves grpcio's native xDS client and meshlib alike, so it is read
and validated as gRPC reads it: ``xds_servers`` (non-empty; ``server_uri``,
``channel_creds``, ``server_features``) and ``node`` (``id``, ``cluster``,
``locality``, ``metadata``) and ``certificate_providers`` (:mod:`.bootstrap_tls`).
Fields gRPC ignores (``authorities``, ...) are ignored here too. Every error names the source (file
path or environment variable) and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from meshlib.errors import BootstrapError
from meshlib.xds_client.bootstrap_tls import (
    CertificateFiles,
    parse_certificate_providers,
    parse_files,
)
from meshlib.xds_client.resources import Locality

if TYPE_CHECKING:
    from meshlib.security.keeper import CertificateKeeper

BOOTSTRAP_PATH_ENV = "GRPC_XDS_BOOTSTRAP"
BOOTSTRAP_CONFIG_ENV = "GRPC_XDS_BOOTSTRAP_CONFIG"

# Channel credential types meshlib can use today, and those it knows but cannot yet.
SUPPORTED_CREDS_TYPES = frozenset({"insecure", "tls"})
PLANNED_CREDS_TYPES = frozenset({"google_default"})


@dataclass(frozen=True, slots=True)
class ChannelCreds:
    """``tls``: ``files`` (gRFC A65), or ``certificates`` (the join token's keeper,
    which ``Mesh`` sets) for the client certificate and the root."""

    type: str
    config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    files: CertificateFiles | None = None
    certificates: CertificateKeeper | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class XdsServerConfig:
    server_uri: str
    channel_creds: tuple[ChannelCreds, ...]
    server_features: tuple[str, ...] = ()

    @property
    def selected_creds(self) -> ChannelCreds:
        """The first listed credentials meshlib supports (validation guarantees one)."""
        for creds in self.channel_creds:
            if creds.type in SUPPORTED_CREDS_TYPES:
                return creds
        raise BootstrapError(f"xds server {self.server_uri}: no supported channel_creds")

    @property
    def ignore_resource_deletion(self) -> bool:
        """gRFC A53: keep LDS/CDS resources that vanish from a SotW response."""
        return "ignore_resource_deletion" in self.server_features


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    cluster: str = ""
    locality: Locality = field(default_factory=Locality)
    metadata: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Bootstrap:
    xds_servers: tuple[XdsServerConfig, ...]
    node: NodeConfig
    # What a server's inbound listener is called ("%s": its IP:PORT); "" for none.
    server_listener_resource_name_template: str = ""
    certificate_providers: Mapping[str, CertificateFiles] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def server(self) -> XdsServerConfig:
        """The primary server (the first); the xDS and registration clients fall back
        to the others in order (:mod:`meshlib.xds_client.server_order`)."""
        return self.xds_servers[0]


def load_bootstrap(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
) -> Bootstrap:
    """Load the bootstrap from ``path``, else ``$GRPC_XDS_BOOTSTRAP``, else
    ``$GRPC_XDS_BOOTSTRAP_CONFIG`` (the JSON itself)."""
    if path is None and environ.get(BOOTSTRAP_PATH_ENV):
        path = environ[BOOTSTRAP_PATH_ENV]
    if path is not None:
        source = f"bootstrap {os.fspath(path)}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BootstrapError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    elif environ.get(BOOTSTRAP_CONFIG_ENV):
        source = f"bootstrap ${BOOTSTRAP_CONFIG_ENV}"
        text = environ[BOOTSTRAP_CONFIG_ENV]
    else:
        raise BootstrapError(
            f"no xDS bootstrap: set {BOOTSTRAP_PATH_ENV} to the path of a bootstrap file "
            f"or {BOOTSTRAP_CONFIG_ENV} to its JSON content (or pass a path)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BootstrapError(f"{source}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BootstrapError(f"{source}: must be a JSON object")
    return parse_bootstrap(data, source)


def parse_bootstrap(data: Mapping[str, Any], source: str) -> Bootstrap:
    """Validate decoded bootstrap JSON; ``source`` prefixes every error message."""
    return _Parser(source).bootstrap(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self._source = source

    def _fail(self, where: str, problem: str) -> BootstrapError:
        return BootstrapError(f"{self._source}: {where}: {problem}")

    def bootstrap(self, data: Mapping[str, Any]) -> Bootstrap:
        servers = data.get("xds_servers")
        if servers is None:
            raise self._fail("xds_servers", "required")
        if not isinstance(servers, list):
            raise self._fail("xds_servers", "must be a list")
        if not servers:
            raise self._fail("xds_servers", "must not be empty")
        parsed = tuple(self._server(s, f"xds_servers[{i}]") for i, s in enumerate(servers))
        template = data.get("server_listener_resource_name_template", "")
        if not isinstance(template, str):
            raise self._fail("server_listener_resource_name_template", "must be a string")
        return Bootstrap(
            xds_servers=parsed,
            node=self._node(data.get("node")),
            server_listener_resource_name_template=template,
            certificate_providers=parse_certificate_providers(
                data.get("certificate_providers"), self._fail
            ),
        )

    def _server(self, raw: object, where: str) -> XdsServerConfig:
        if not isinstance(raw, dict):
            raise self._fail(where, "must be an object")
        uri = raw.get("server_uri")
        if uri is None or uri == "":
            raise self._fail(f"{where}.server_uri", "required")
        if not isinstance(uri, str):
            raise self._fail(f"{where}.server_uri", "must be a string")
        creds = self._channel_creds(raw.get("channel_creds"), f"{where}.channel_creds")
        features = raw.get("server_features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise self._fail(f"{where}.server_features", "must be a list of strings")
        return XdsServerConfig(uri, creds, tuple(features))

    def _channel_creds(self, raw: object, where: str) -> tuple[ChannelCreds, ...]:
        if raw is None:
            raise self._fail(where, "required")
        if not isinstance(raw, list):
            raise self._fail(where, "must be a list")
        if not raw:
            raise self._fail(where, "must not be empty")
        creds: list[ChannelCreds] = []
        for i, item in enumerate(raw):
            at = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise self._fail(at, "must be an object")
            ctype = item.get("type")
            if not isinstance(ctype, str) or not ctype:
                raise self._fail(f"{at}.type", "required (a string)")
            config = item.get("config", {})
            if not isinstance(config, dict):
                raise self._fail(f"{at}.config", "must be an object")
            files = parse_files(config, f"{at}.config", self._fail) if ctype == "tls" else None
            creds.append(ChannelCreds(ctype, MappingProxyType(dict(config)), files))
        if any(c.type in SUPPORTED_CREDS_TYPES for c in creds):
            return tuple(creds)
        planned = [c.type for c in creds if c.type in PLANNED_CREDS_TYPES]
        if planned:
            raise self._fail(
                where,
                f"channel credentials type {planned[0]!r} is not supported yet (use 'insecure' "
                "or 'tls')",
            )
        listed = ", ".join(repr(c.type) for c in creds)
        raise self._fail(where, f"no supported type among {listed} (supported: 'insecure', 'tls')")

    def _node(self, raw: object) -> NodeConfig:
        if raw is None:
            raise self._fail("node", "required (node.id identifies this client)")
        if not isinstance(raw, dict):
            raise self._fail("node", "must be an object")
        node_id = raw.get("id")
        if node_id is None or node_id == "":
            raise self._fail("node.id", "required")
        if not isinstance(node_id, str):
            raise self._fail("node.id", "must be a string")
        cluster = raw.get("cluster", "")
        if not isinstance(cluster, str):
            raise self._fail("node.cluster", "must be a string")
        metadata = raw.get("metadata", {})
        if not isinstance(metadata, dict):
            raise self._fail("node.metadata", "must be an object")
        return NodeConfig(
            id=node_id,
            cluster=cluster,
            locality=self._locality(raw.get("locality", {})),
            metadata=MappingProxyType(dict(metadata)),
        )

    def _locality(self, raw: object) -> Locality:
        if not isinstance(raw, dict):
            raise self._fail("node.locality", "must be an object")
        values: dict[str, str] = {}
        for key in ("region", "zone", "sub_zone"):
            value = raw.get(key, "")
            if not isinstance(value, str):
                raise self._fail(f"node.locality.{key}", "must be a string")
            values[key] = value
        return Locality(**values)
