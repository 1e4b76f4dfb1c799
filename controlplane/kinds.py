"""Kind names as operators type them: ``VirtualService``, ``virtualservice``,
``virtualservices``, ``vs`` (Istio's short names) all mean one kind, for the admin API's
``/v1/resources/{kind}`` and ``meshctl get/delete`` alike."""

from __future__ import annotations

from controlplane.config.resource import NOT_YET_KINDS, SUPPORTED_KINDS

SHORT_NAMES = {
    "ServiceEntry": "se",
    "WorkloadEntry": "we",
    "VirtualService": "vs",
    "DestinationRule": "dr",
    "PeerAuthentication": "pa",
    "AuthorizationPolicy": "ap",
    "ServiceIntentions": "serviceintentions",
    "RequestAuthentication": "ra",
}


class UnknownKind(ValueError):
    """The name is no kind the control plane keeps; the message says which ones it does."""


def plural(name: str) -> str:
    """As Kubernetes names resources: ``serviceentries``, ``virtualservices``."""
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def _aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for kind in SUPPORTED_KINDS:
        lower = kind.lower()
        for alias in (lower, plural(lower), SHORT_NAMES.get(kind, lower)):
            aliases[alias] = kind
    return aliases


_ALIASES = _aliases()


def canonical_kind(name: str) -> str:
    """The kind ``name`` stands for (case-insensitive, plural or short); raises UnknownKind."""
    kind = _ALIASES.get(name.lower())
    if kind is not None:
        return kind
    known = ", ".join(f"{k} ({SHORT_NAMES.get(k, k.lower())})" for k in SUPPORTED_KINDS)
    if any(name.lower() in (k.lower(), plural(k.lower())) for k in NOT_YET_KINDS):
        raise UnknownKind(f"kind {name!r} is not supported yet (supported: {known})")
    raise UnknownKind(f"unknown kind {name!r} (supported: {known})")
