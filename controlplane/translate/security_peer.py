"""The mTLS mode a workload's server accepts on one port (PeerAuthentication scopes).

Istio's precedence: the mesh-wide policy (root namespace, no selector), then the
namespace's (no selector), then the first policy of the workload's namespace whose
selector matches its labels, then that policy's ``portLevelMtls`` for the port;
each level with mode UNSET inherits. Nothing set: PERMISSIVE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from controlplane.security_model import MtlsMode, PeerAuthentication
from controlplane.translate.security_settings import PolicySettings


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A selector matches labels holding each of its pairs; no selector matches all."""
    return selector is None or all(labels.get(k) == v for k, v in selector.items())


def peer_mode(
    policies: Sequence[PeerAuthentication],
    settings: PolicySettings,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
) -> MtlsMode:
    """The mode in force for the workload (never UNSET)."""
    mesh = _first(p for p in policies if p.namespace == settings.root_namespace and not p.selector)
    space = _first(p for p in policies if p.namespace == namespace and not p.selector)
    workload = _first(
        p
        for p in policies
        if p.namespace == namespace and p.selector and selects(p.selector, labels)
    )
    mode = MtlsMode.PERMISSIVE
    for policy in (mesh, space, workload):
        if policy is not None and policy.mode is not MtlsMode.UNSET:
            mode = policy.mode
    if workload is not None:
        port_mode = workload.port_modes.get(port, MtlsMode.UNSET)
        if port_mode is not MtlsMode.UNSET:
            mode = port_mode
    return mode


def _first(policies: Iterable[PeerAuthentication]) -> PeerAuthentication | None:
    return next(iter(policies), None)
