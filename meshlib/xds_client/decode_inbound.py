"""A server-side Listener (gRFC A36) -> InboundListenerResource.

The listener a serving workload asks for by name
(``xds.istio.io/grpc/lds/inbound/IP:PORT``): an address, exactly one filter chain
(``filter_chains[0]`` without a ``filter_chain_match``, or ``default_filter_chain``)
holding one HttpConnectionManager, and an optional ``DownstreamTlsContext``.
The HCM's HTTP filters are what decides a request: RBAC and JWT filters are decoded
(:mod:`.decode_rbac`, :mod:`.decode_jwt`); the router ends the chain; any other
filter is refused unless ``is_optional``. Its inline routes must be
``non_forwarding_action`` without per-route filter configs (A36), and HCM fields that
would change what RBAC sees (trusted XFF hops, path normalization) are refused.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshlib.xds_client._decode_util import DecodeContext, reject_if_set, unpack_any
from meshlib.xds_client.decode_filters import config_type_url
from meshlib.xds_client.decode_jwt import decode_jwt_filter
from meshlib.xds_client.decode_rbac import decode_rbac_filter
from meshlib.xds_client.filter_models import ROUTER_FILTER_TYPE_URL
from meshlib.xds_client.inbound_resources import (
    JWT_AUTHN_FILTER_TYPE_URL,
    RBAC_FILTER_TYPE_URL,
    DownstreamTls,
    InboundFilter,
    InboundListenerResource,
)

HCM_TYPE_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
TLS_TYPE_URL = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_HCM_UNSUPPORTED = (
    "xff_num_trusted_hops",
    "original_ip_detection_extensions",
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "path_normalization_options",
    "strip_matching_host_port",
    "strip_any_host_port",
    "early_header_mutation_extensions",
)


def is_inbound_listener(msg: Any) -> bool:
    """A server-side listener: no api_listener, an address and filter chains."""
    return not msg.HasField("api_listener") and (
        len(msg.filter_chains) > 0 or msg.HasField("default_filter_chain")
    )


def decode_inbound_listener(msg: Any) -> InboundListenerResource:
    ctx = DecodeContext("Listener", msg.name)
    if not msg.name:
        raise ctx.error("name: required")
    address, port = _address(ctx, msg)
    reject_if_set(
        ctx, msg, ("filter_chain_matcher", "use_original_dst", "listener_filters"), "listener"
    )
    chains = list(msg.filter_chains)
    if len(chains) > 1:
        raise ctx.error("filter_chains: meshlib serves one filter chain per listener")
    if chains:
        where, chain = "filter_chains[0]", chains[0]
        if chain.HasField("filter_chain_match") and chain.filter_chain_match.ByteSize():
            raise ctx.error(f"{where}.filter_chain_match: not supported (one chain serves all)")
    else:
        where, chain = "default_filter_chain", msg.default_filter_chain
    tls = _tls(ctx, chain, where) if chain.HasField("transport_socket") else None
    return InboundListenerResource(
        name=msg.name,
        address=address,
        port=port,
        filters=_chain_filters(ctx, chain, where),
        tls=tls,
    )


def _address(ctx: DecodeContext, msg: Any) -> tuple[str, int]:
    if msg.address.WhichOneof("address") != "socket_address":
        raise ctx.error("address.socket_address: required")
    socket = msg.address.socket_address
    if socket.WhichOneof("port_specifier") != "port_value":
        raise ctx.error("address.socket_address.port_value: required")
    return socket.address, socket.port_value


def _chain_filters(ctx: DecodeContext, chain: Any, where: str) -> tuple[InboundFilter, ...]:
    if len(chain.filters) != 1:
        raise ctx.error(f"{where}.filters: exactly one (the HttpConnectionManager) required")
    network = chain.filters[0]
    at = f"{where}.filters[0]"
    if network.WhichOneof("config_type") != "typed_config":
        raise ctx.error(f"{at}.typed_config: required")
    hcm = unpack_any(ctx, network.typed_config, hcm_pb2.HttpConnectionManager, f"{at}.typed_config")
    at = f"{at}.http_connection_manager"
    reject_if_set(ctx, hcm, _HCM_UNSUPPORTED, at)
    _routes(ctx, hcm, at)
    return _http_filters(ctx, hcm.http_filters, f"{at}.http_filters")


def _routes(ctx: DecodeContext, hcm: Any, where: str) -> None:
    if hcm.WhichOneof("route_specifier") != "route_config":
        raise ctx.error(f"{where}.route_config: required inline on an inbound listener")
    config = hcm.route_config
    reject_if_set(ctx, config, ("typed_per_filter_config",), f"{where}.route_config")
    for i, host in enumerate(config.virtual_hosts):
        at = f"{where}.route_config.virtual_hosts[{i}]"
        reject_if_set(ctx, host, ("typed_per_filter_config",), at)
        for j, route in enumerate(host.routes):
            reject_if_set(ctx, route, ("typed_per_filter_config",), f"{at}.routes[{j}]")
            if route.WhichOneof("action") != "non_forwarding_action":
                raise ctx.error(f"{at}.routes[{j}]: an inbound route must be non_forwarding_action")


def _http_filters(ctx: DecodeContext, filters: Any, where: str) -> tuple[InboundFilter, ...]:
    chain: list[InboundFilter] = []
    names: set[str] = set()
    router_seen = False
    for i, flt in enumerate(filters):
        at = f"{where}[{i}]"
        if not flt.name:
            raise ctx.error(f"{at}.name: required")
        if flt.name in names:
            raise ctx.error(f'{at}: duplicate filter name "{flt.name}"')
        names.add(flt.name)
        if router_seen:
            raise ctx.error(f'{at}: filter "{flt.name}" comes after the router')
        if flt.disabled:
            raise ctx.error(
                f'{at}.disabled: "{flt.name}" is disabled (no per-route enabling inbound)'
            )
        if flt.WhichOneof("config_type") != "typed_config":
            if flt.is_optional:
                continue
            raise ctx.error(f'{at} "{flt.name}": filter with no typed_config is not supported')
        url = config_type_url(ctx, flt.typed_config, f"{at}.typed_config")
        if url == ROUTER_FILTER_TYPE_URL:
            router_seen = True
        elif url == RBAC_FILTER_TYPE_URL:
            config = decode_rbac_filter(ctx, flt.typed_config, f"{at}.typed_config")
            chain.append(InboundFilter(flt.name, config))
        elif url == JWT_AUTHN_FILTER_TYPE_URL:
            chain.append(
                InboundFilter(
                    flt.name, decode_jwt_filter(ctx, flt.typed_config, f"{at}.typed_config")
                )
            )
        elif not flt.is_optional:
            raise ctx.error(f'{at} "{flt.name}": filter {url or "(none)"} is not supported inbound')
    if not router_seen:
        raise ctx.error(f"{where}: the router filter ({ROUTER_FILTER_TYPE_URL}) must be last")
    return tuple(chain)


def _tls(ctx: DecodeContext, chain: Any, where: str) -> DownstreamTls:
    socket = chain.transport_socket
    at = f"{where}.transport_socket"
    if socket.WhichOneof("config_type") != "typed_config":
        raise ctx.error(f"{at}.typed_config: required")
    context = unpack_any(
        ctx, socket.typed_config, tls_pb2.DownstreamTlsContext, f"{at}.typed_config"
    )
    at = f"{at}.downstream_tls_context"
    reject_if_set(ctx, context, ("require_sni", "ocsp_staple_policy"), at)
    common = context.common_tls_context
    identity = ""
    if common.HasField("tls_certificate_provider_instance"):
        identity = common.tls_certificate_provider_instance.instance_name
    elif common.HasField("tls_certificate_certificate_provider_instance"):
        identity = common.tls_certificate_certificate_provider_instance.instance_name
    validation = ""
    if common.HasField("validation_context"):
        ca = common.validation_context
        if ca.HasField("ca_certificate_provider_instance"):
            validation = ca.ca_certificate_provider_instance.instance_name
    elif common.HasField("combined_validation_context"):
        default = common.combined_validation_context.default_validation_context
        if default.HasField("ca_certificate_provider_instance"):
            validation = default.ca_certificate_provider_instance.instance_name
        else:
            combined = common.combined_validation_context
            instance = combined.validation_context_certificate_provider_instance
            validation = instance.instance_name
    elif common.HasField("validation_context_certificate_provider_instance"):
        validation = common.validation_context_certificate_provider_instance.instance_name
    require = context.require_client_certificate.value
    if require and not validation:
        raise ctx.error(f"{at}: require_client_certificate needs a validation context")
    return DownstreamTls(
        require_client_certificate=require,
        identity_instance=identity,
        validation_instance=validation,
    )
