"""CDS: the ``UpstreamTlsContext`` of a cluster (auto mTLS and DestinationRule ``tls``).

A DestinationRule's ``tls`` in force for the cluster decides (DISABLE: plaintext;
ISTIO_MUTUAL: the mesh certificate; SIMPLE / MUTUAL: its files). Without one, auto
mTLS: mesh mTLS when every endpoint of the cluster has an identity and requires
mTLS on that port (PeerAuthentication STRICT). Unlike Istio's sidecars, a
PERMISSIVE peer gets plaintext: grpcio's xDS server cannot accept both on one
port (Istio's proxyless gRPC treats PERMISSIVE as DISABLE), and plaintext reaches
every PERMISSIVE server, whatever its data plane. The peer must present one of
the endpoints' SPIFFE IDs (or the rule's ``subjectAltNames``).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from controlplane.model import MeshConfig, Resolution
from controlplane.security_model import MtlsMode, TlsMode
from controlplane.translate.common import pack
from controlplane.translate.security_peer import peer_mode
from controlplane.translate.security_settings import PolicySettings, endpoint_identity
from controlplane.translate.security_tls import CertSource, file_tls_context, mesh_tls_context
from controlplane.translate.subsets import ClusterPlan

TLS_SOCKET_NAME = "envoy.transport_sockets.tls"


def upstream_tls(
    plan: ClusterPlan, config: MeshConfig, settings: PolicySettings, source: CertSource
) -> tls_pb2.UpstreamTlsContext | None:
    """The cluster's TLS context, None for plaintext."""
    tls = plan.policy.tls
    if tls is None:
        sans = _auto_mtls_sans(plan, config, settings)
        if sans is None:
            return None
        return tls_pb2.UpstreamTlsContext(common_tls_context=mesh_tls_context(source, sans))
    if tls.mode is TlsMode.DISABLE:
        return None
    if tls.mode is TlsMode.ISTIO_MUTUAL:
        names = tls.subject_alt_names or _identities(plan, settings)
        context = mesh_tls_context(source, sorted(set(names)))
    else:
        context = file_tls_context(
            tls.client_certificate if tls.mode is TlsMode.MUTUAL else "",
            tls.private_key if tls.mode is TlsMode.MUTUAL else "",
            tls.ca_certificates,
            tls.subject_alt_names,
        )
    return tls_pb2.UpstreamTlsContext(common_tls_context=context, sni=tls.sni)


def secured_cluster(
    cluster: cluster_pb2.Cluster,
    plan: ClusterPlan,
    config: MeshConfig,
    settings: PolicySettings,
    source: CertSource,
) -> cluster_pb2.Cluster:
    """``cluster`` with the TLS transport socket its destination needs (if any)."""
    context = upstream_tls(plan, config, settings, source)
    if context is not None:
        cluster.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_SOCKET_NAME, typed_config=pack(context))
        )
    return cluster


def _identities(plan: ClusterPlan, settings: PolicySettings) -> list[str]:
    return [i for i in (endpoint_identity(e, settings) for e in plan.endpoints) if i]


def _auto_mtls_sans(
    plan: ClusterPlan, config: MeshConfig, settings: PolicySettings
) -> list[str] | None:
    if plan.service.resolution is not Resolution.STATIC or not plan.endpoints:
        return None
    identities = _identities(plan, settings)
    if len(identities) != len(plan.endpoints):
        return None  # some endpoint could not answer mTLS
    for endpoint in plan.endpoints:
        mode = peer_mode(
            config.peer_authentications,
            settings,
            endpoint.namespace or plan.service.namespace,
            endpoint.labels,
            endpoint.port,
        )
        if mode is not MtlsMode.STRICT:
            return None
    return sorted(set(identities))
