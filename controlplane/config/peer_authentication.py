"""PeerAuthentication (security.istio.io): the mTLS mode a workload's servers accept.

``selector.matchLabels`` (none: the whole namespace; in the root namespace, the mesh),
``mtls.mode`` STRICT / PERMISSIVE / DISABLE / UNSET (inherit) and ``portLevelMtls``
(workload port -> mode; Istio honours it only with a selector, so it requires one).
"""

from __future__ import annotations

from types import MappingProxyType

from controlplane.config.fields import Fields, child, describe
from controlplane.config.resource import Header
from controlplane.config.workload_entry import MAX_PORT
from controlplane.config.workload_selector import parse_selector
from controlplane.security_model import MtlsMode, PeerAuthentication

SPEC_FIELDS = ("selector", "mtls", "portLevelMtls")
MODES = tuple(mode.value for mode in MtlsMode)


def parse_peer_authentication(header: Header, spec: Fields) -> PeerAuthentication | None:
    """Validate a PeerAuthentication spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, what="PeerAuthentication spec")
    selector = parse_selector(spec)
    mode = _mode(spec.mapping("mtls"))
    ports = _port_modes(spec)
    if ports and selector is None:
        ctx.error(
            spec.at("portLevelMtls"),
            "needs a selector with matchLabels (Istio applies port-level modes to selected "
            "workloads only)",
        )
    if ctx.count != before:
        return None
    return PeerAuthentication(
        name=header.name,
        namespace=header.namespace,
        selector=selector,
        mode=mode or MtlsMode.UNSET,
        port_modes=MappingProxyType(ports),
        source=header.source,
    )


def _mode(fields: Fields | None) -> MtlsMode | None:
    if fields is None:
        return None
    fields.reject_unknown(("mode",), what="mtls")
    text = fields.choice("mode", supported=MODES, what="mTLS mode")
    return MtlsMode(text) if text is not None else None


def _port_modes(spec: Fields) -> dict[int, MtlsMode]:
    """Keys are port numbers, written bare (YAML integers) or quoted."""
    raw = spec.data.get("portLevelMtls")
    result: dict[int, MtlsMode] = {}
    if raw is None:
        return result
    if not isinstance(raw, dict):
        spec.ctx.error(spec.at("portLevelMtls"), f"must be a mapping, got {describe(raw)}")
        return result
    for key, value in raw.items():
        path = child(spec.at("portLevelMtls"), str(key))
        port = key if isinstance(key, int) and not isinstance(key, bool) else 0
        if isinstance(key, str) and key.isdigit():
            port = int(key)
        if not 1 <= port <= MAX_PORT:
            spec.ctx.error(path, f"must be a port number in 1..{MAX_PORT}, got {key!r}")
            continue
        entry = Fields.of(spec.ctx, path, value)
        if entry is None:
            continue
        mode = _mode(entry)
        if mode is None and not entry.present("mode"):
            spec.ctx.error(entry.at("mode"), f"is required (one of {', '.join(MODES)})")
        elif mode is not None:
            result[port] = mode
    return result
