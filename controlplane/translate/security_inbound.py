"""LDS: the server side of the mesh: inbound listeners with mTLS and authorization.

Proxyless servers (grpcio's xDS server, gRFC A36; meshlib's servers) ask for
``xds.istio.io/grpc/lds/inbound/IP:PORT``: one listener per address and port a
workload serves (registrations, WorkloadEntries, inline endpoints). Its filter
chain carries a ``DownstreamTlsContext`` requiring a client certificate when the
PeerAuthentication mode is STRICT, and is plaintext otherwise (PERMISSIVE as
Istio's proxyless gRPC treats it: gRPC cannot tell TLS from plaintext on one
port). Its HttpConnectionManager holds an inline route table (one
``non_forwarding_action`` route, as A36 requires), the RBAC filters of
:mod:`.security_rbac` and the router.

An Envoy sidecar with ``mesh.inbound_port`` Q and ``mesh.app_port`` A in its node
metadata gets ``mesh_inbound`` on Q forwarding to 127.0.0.1:A (cluster
``inbound|A||mesh_inbound``): STRICT one TLS chain, DISABLE one plaintext chain,
PERMISSIVE both, told apart by the TLS inspector (plaintext alone when the node names
no ``mesh.cert_dir``). Its labels and namespace are the
node's ``LABELS`` / ``NAMESPACE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as http_options_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from controlplane.model import MeshConfig, NodeInfo, Resolution
from controlplane.security_model import MtlsMode
from controlplane.translate.caller_node import node_namespace, own_labels
from controlplane.translate.common import pack, socket_address
from controlplane.translate.errors import TranslationError
from controlplane.translate.http_filters import router_filter
from controlplane.translate.security_intentions import intention_deny_policies
from controlplane.translate.security_jwt import jwt_filter
from controlplane.translate.security_peer import peer_mode
from controlplane.translate.security_rbac import applicable_policies, rbac_filters
from controlplane.translate.security_settings import PolicySettings
from controlplane.translate.security_tls import CERT_DIR_KEY, CertSource, mesh_tls_context
from controlplane.translate.security_upstream import TLS_SOCKET_NAME
from controlplane.translate.services import MeshService
from controlplane.translate.sidecar import HCM_FILTER_NAME, LOOPBACK
from controlplane.translate.source_match import INBOUND_PORT_KEY

INBOUND_PREFIX = "xds.istio.io/grpc/lds/inbound/"
APP_PORT_KEY = "mesh.app_port"
SIDECAR_INBOUND = "mesh_inbound"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
CONNECT_TIMEOUT_S = 5
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True, slots=True)
class ServerWorkload:
    """One address and port a workload serves, and who it is for policy."""

    address: str
    port: int
    namespace: str
    labels: Mapping[str, str]
    hosts: tuple[str, ...] = ()  # the services it serves (for ServiceIntentions)


def inbound_listener_name(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{INBOUND_PREFIX}{host}:{port}"


def server_workloads(services: Sequence[MeshService]) -> list[ServerWorkload]:
    """Every (address, port) served by a STATIC service's endpoint, first seen wins."""
    # (namespace, labels) of the first endpoint seen, and the hosts, built up: each
    # workload is made once (this runs for every endpoint of every translation).
    found: dict[tuple[str, int], tuple[str, Mapping[str, str], list[str]]] = {}
    for service in services:
        if service.resolution is not Resolution.STATIC:
            continue
        for endpoint in service.endpoints:
            key = (endpoint.address, endpoint.port)
            seen = found.get(key)
            if seen is None:
                seen = found[key] = (endpoint.namespace or service.namespace, endpoint.labels, [])
            if service.host not in seen[2]:
                seen[2].append(service.host)
    return [
        ServerWorkload(address, port, namespace, labels, tuple(hosts))
        for (address, port), (namespace, labels, hosts) in sorted(found.items())
    ]


def _sidecar_hosts(
    services: Sequence[MeshService], namespace: str, labels: Mapping[str, str], app_port: int
) -> tuple[str, ...]:
    """The services whose endpoints listen on the sidecar's app port with its labels."""
    return tuple(
        sorted(
            {
                service.host
                for service in services
                for e in service.endpoints
                if e.port == app_port
                and (e.namespace or service.namespace) == namespace
                and all(labels.get(k) == v for k, v in e.labels.items())
            }
        )
    )


def proxyless_inbound_listeners(
    config: MeshConfig, services: Sequence[MeshService], settings: PolicySettings
) -> dict[str, listener_pb2.Listener]:
    listeners: dict[str, listener_pb2.Listener] = {}
    for workload in server_workloads(services):
        listener = proxyless_inbound_listener(config, workload, settings)
        listeners[listener.name] = listener
    return listeners


def proxyless_inbound_listener(
    config: MeshConfig, workload: ServerWorkload, settings: PolicySettings
) -> listener_pb2.Listener:
    """The inbound listener of one workload a proxyless server serves."""
    name = inbound_listener_name(workload.address, workload.port)
    mode = peer_mode(
        config.peer_authentications,
        settings,
        workload.namespace,
        workload.labels,
        workload.port,
    )
    filters = _filters(config, settings, workload, sidecar=False)
    manager = _manager(name, _non_forwarding_route(name), filters, sidecar=False)
    tls = _downstream_tls(CertSource()) if mode is MtlsMode.STRICT else None
    return listener_pb2.Listener(
        name=name,
        address=socket_address(workload.address, workload.port),
        filter_chains=[_chain(name, manager, tls)],
        traffic_direction=base_pb2.INBOUND,
    )


def has_sidecar_inbound(node: NodeInfo) -> bool:
    return node.is_sidecar and INBOUND_PORT_KEY in node.metadata


def check_sidecar_inbound(node: NodeInfo) -> None:
    """Raise TranslationError when a sidecar's inbound metadata is unusable."""
    if has_sidecar_inbound(node):
        metadata_port(node.metadata, INBOUND_PORT_KEY)
        metadata_port(node.metadata, APP_PORT_KEY)


def sidecar_inbound(
    config: MeshConfig,
    services: Sequence[MeshService],
    node: NodeInfo,
    settings: PolicySettings,
) -> tuple[listener_pb2.Listener, cluster_pb2.Cluster]:
    """The sidecar's inbound listener and the cluster of its application."""
    port = metadata_port(node.metadata, INBOUND_PORT_KEY)
    app_port = metadata_port(node.metadata, APP_PORT_KEY)
    cluster_name = f"inbound|{app_port}||{SIDECAR_INBOUND}"
    namespace = node_namespace(node) or "default"
    labels = own_labels(node.metadata)
    hosts = _sidecar_hosts(services, namespace, labels, app_port)
    workload = ServerWorkload(LOOPBACK, app_port, namespace, labels, hosts)
    mode = peer_mode(config.peer_authentications, settings, namespace, workload.labels, app_port)
    filters = _filters(config, settings, workload, sidecar=True)
    manager = _manager(SIDECAR_INBOUND, _forwarding_route(cluster_name), filters, sidecar=True)
    tls = _downstream_tls(CertSource.of(node), alpn=True)
    listener = listener_pb2.Listener(
        name=SIDECAR_INBOUND,
        address=socket_address("0.0.0.0", port),
        traffic_direction=base_pb2.INBOUND,
    )
    if mode is MtlsMode.STRICT:
        listener.filter_chains.append(_chain("inbound-mtls", manager, tls))
    elif mode is MtlsMode.DISABLE or CERT_DIR_KEY not in node.metadata:
        # PERMISSIVE without a cert dir: plaintext only (a TLS chain without its files
        # would make Envoy refuse the whole listener).
        listener.filter_chains.append(_chain("inbound-plaintext", manager, None))
    else:
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        )
        listener.filter_chains.extend(
            [
                _chain("inbound-mtls", manager, tls, transport="tls"),
                _chain("inbound-plaintext", manager, None, transport="raw_buffer"),
            ]
        )
    return listener, _app_cluster(cluster_name, app_port)


def metadata_port(metadata: Mapping[str, object], key: str) -> int:
    """A port from node metadata (a number or a numeric string)."""
    value = metadata.get(key)
    port: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, float) and value.is_integer():
        port = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        port = int(value.strip())
    if port is None or not 1 <= port <= 65535:
        raise TranslationError(
            f"sidecar node metadata {key!r}: need a port in 1..65535, got {value!r}"
        )
    return port


# --- pieces ---------------------------------------------------------------------


def _filters(
    config: MeshConfig, settings: PolicySettings, workload: ServerWorkload, *, sidecar: bool
) -> list[hcm_pb2.HttpFilter]:
    """[JWT], RBAC, router. Envoy and meshlib validate JWTs; a proxyless listener marks
    the JWT filter optional, so grpcio (which has none) skips it and its RBAC sees no
    request principal (metadata never matches, gRFC A41). Envoy and meshlib log AUDIT
    (an RBAC LOG filter); grpcio ignores a LOG filter (A41)."""
    policies = applicable_policies(
        config.authorization_policies, settings, workload.namespace, workload.labels
    )
    intentions = intention_deny_policies(config.service_intentions, workload.hosts)
    jwt = jwt_filter(config.request_authentications, settings, workload.namespace, workload.labels)
    if jwt is not None and not sidecar:
        jwt.is_optional = True
    rbac = rbac_filters(policies, audit=True, jwt=jwt is not None, extra_deny=intentions)
    return [*([jwt] if jwt is not None else []), *rbac, router_filter()]


def _manager(
    name: str,
    route: rc.Route,
    filters: list[hcm_pb2.HttpFilter],
    *,
    sidecar: bool,
) -> hcm_pb2.HttpConnectionManager:
    host = rc.VirtualHost(name=f"{name}|*", domains=["*"], routes=[route])
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        route_config=route_pb2.RouteConfiguration(name=name, virtual_hosts=[host]),
        http_filters=filters,
    )
    if sidecar:
        manager.codec_type = hcm_pb2.HttpConnectionManager.AUTO
        manager.forward_client_cert_details = hcm_pb2.HttpConnectionManager.APPEND_FORWARD
        manager.set_current_client_cert_details.uri = True
    return manager


def _non_forwarding_route(name: str) -> rc.Route:
    return rc.Route(
        name=name,
        match=rc.RouteMatch(prefix="/"),
        non_forwarding_action=rc.NonForwardingAction(),
    )


def _forwarding_route(cluster: str) -> rc.Route:
    return rc.Route(
        name=cluster,
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=cluster, timeout=duration_pb2.Duration(seconds=0)),
    )


def _downstream_tls(source: CertSource, *, alpn: bool = False) -> tls_pb2.DownstreamTlsContext:
    context = mesh_tls_context(source)
    if alpn:
        context.alpn_protocols.extend(["h2", "http/1.1"])
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=context,
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )


def _chain(
    name: str,
    manager: hcm_pb2.HttpConnectionManager,
    tls: tls_pb2.DownstreamTlsContext | None,
    *,
    transport: str = "",
) -> listener_components_pb2.FilterChain:
    chain = listener_components_pb2.FilterChain(
        name=name,
        filters=[listener_components_pb2.Filter(name=HCM_FILTER_NAME, typed_config=pack(manager))],
    )
    if transport:
        chain.filter_chain_match.transport_protocol = transport
    if tls is not None:
        chain.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_SOCKET_NAME, typed_config=pack(tls))
        )
    return chain


def _app_cluster(name: str, port: int) -> cluster_pb2.Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(LOOPBACK, port))
    )
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
    # The application gets the protocol the caller spoke (HTTP/1.1, or h2 for gRPC).
    options = http_options_pb2.HttpProtocolOptions(
        use_downstream_protocol_config=http_options_pb2.HttpProtocolOptions.UseDownstreamHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
        )
    )
    cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(options))
    return cluster
