"""The part every resource shares: apiVersion, kind, metadata, spec.

:func:`parse_header` decides whether a document is a kind we read, and returns
its name, namespace and source; the per-kind modules validate the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.config import names
from controlplane.config.fields import DocContext, Fields, describe
from controlplane.model import Source

API_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)
SECURITY_API_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")
SECURITY_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")
CONSUL_API_VERSIONS = ("consul.hashicorp.com/v1alpha1",)
SUPPORTED_KINDS = (
    "ServiceEntry",
    "WorkloadEntry",
    "VirtualService",
    "DestinationRule",
    *SECURITY_KINDS,
    "ServiceIntentions",
)
_SUPPORTED = ", ".join(SUPPORTED_KINDS)
# Istio kinds we will read in later issues: a clear "not supported yet", not "unknown".
NOT_YET_KINDS = frozenset(
    {
        "Gateway",
        "Sidecar",
        "EnvoyFilter",
        "WorkloadGroup",
        "ProxyConfig",
        "Telemetry",
        "WasmPlugin",
    }
)
TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
DEFAULT_NAMESPACE = "default"
MESHLIB_PREFIX = "meshlib.dev/"


@dataclass(frozen=True, slots=True)
class Header:
    """A resource's identity: what it is, what it is called, where it was written."""

    kind: str
    name: str
    namespace: str
    source: Source
    # metadata.annotations as written; only the meshlib.dev/ ones are config.
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def parse_header(ctx: DocContext, document: object) -> tuple[Header, Fields] | None:
    """Validate the envelope of one document.

    Returns None (with issues) when the document is not a resource we can read
    (not a mapping, unknown or unsupported kind, no spec mapping). Otherwise the
    spec is returned for validation even if the metadata had issues, so one load
    reports every problem; the header then carries whatever name could be read.
    ``status`` is accepted and ignored: a cluster writes it, never a user, so
    copying a resource out of Kubernetes works.
    """
    top = Fields.of(ctx, "", document)
    if top is None:
        return None
    kind = top.string("kind", required=True)
    if kind is None:
        return None
    if kind not in SUPPORTED_KINDS:
        if kind in NOT_YET_KINDS:
            ctx.error("kind", f"kind {kind} is not supported yet (supported: {_SUPPORTED})")
        else:
            ctx.error("kind", f"unknown kind {kind!r} (supported: {_SUPPORTED})")
        return None
    top.reject_unknown(TOP_LEVEL_FIELDS, what=kind)
    _check_api_version(top, _api_versions(kind))
    metadata = top.mapping("metadata", required=True)
    name: str | None = None
    namespace: str | None = None
    annotations: Mapping[str, str] = MappingProxyType({})
    if metadata is not None:  # other metadata (labels, ...) is not config
        name = metadata.string("name", required=True, check=names.dns_subdomain)
        namespace = metadata.string("namespace", check=names.dns_label)
        annotations = _annotations(metadata)
    spec = top.mapping("spec", required=True)
    if spec is None:
        return None
    source = Source(ctx.file, ctx.document or 1)
    header = Header(kind, name or "", namespace or DEFAULT_NAMESPACE, source, annotations)
    return header, spec


def _annotations(metadata: Fields) -> Mapping[str, str]:
    """``metadata.annotations``; values of meshlib.dev/ ones must be strings, others are skipped."""
    fields = metadata.mapping("annotations")
    if fields is None:
        return MappingProxyType({})
    result: dict[str, str] = {}
    for key, value in fields.data.items():
        if isinstance(value, str):
            result[key] = value
        elif key.startswith(MESHLIB_PREFIX):
            fields.ctx.error(fields.at(key), f"must be a string, got {describe(value)} (quote it)")
    return MappingProxyType(result)


def _api_versions(kind: str) -> tuple[str, ...]:
    if kind in SECURITY_KINDS:
        return SECURITY_API_VERSIONS
    if kind == "ServiceIntentions":
        return CONSUL_API_VERSIONS
    return API_VERSIONS


def _check_api_version(top: Fields, versions: tuple[str, ...]) -> None:
    value = top.data.get("apiVersion")
    if value is None:
        top.ctx.error("apiVersion", f"is required (one of {', '.join(versions)})")
    elif value not in versions:
        shown = f'"{value}"' if isinstance(value, str) else describe(value)
        top.ctx.error("apiVersion", f"{shown} must be one of {', '.join(versions)}")
