"""Mesh-wide security settings translate reads, and workload identities.

``trust_domain`` names SPIFFE IDs (``spiffe://TRUST_DOMAIN/ns/NS/sa/SA``, the
control plane's ``--trust-domain``); ``root_namespace`` is where mesh-wide
PeerAuthentication and AuthorizationPolicy live (Istio's ``istio-system``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.translate.services import MeshEndpoint

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    root_namespace: str = DEFAULT_ROOT_NAMESPACE


DEFAULT_POLICY_SETTINGS = PolicySettings()


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def endpoint_identity(endpoint: MeshEndpoint, settings: PolicySettings) -> str:
    """The endpoint's SPIFFE ID ("" when it has none): a registration's own, else
    its service account's in its namespace (as Istio derives it)."""
    if endpoint.spiffe_id:
        return endpoint.spiffe_id
    if endpoint.service_account:
        namespace = endpoint.namespace or "default"
        return spiffe_id(settings.trust_domain, namespace, endpoint.service_account)
    return ""
