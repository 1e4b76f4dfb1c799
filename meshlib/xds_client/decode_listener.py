"""Listener (LDS) -> ListenerResource, validated as gRPC's client validates it.

A server-side listener (filter chains, no api_listener) is a serving workload's
inbound listener, decoded by :mod:`.decode_inbound`. A client-side listener must
be an ``api_listener`` holding an HttpConnectionManager (gRFC A27). Its routes
come over RDS on this ADS stream (config source ``ads`` or ``self``) or inline.
HTTP filters (gRFC A39): names unique, each with a typed config of a known type
(unknown ones skipped when ``is_optional``, refused otherwise), the router last.
The router, fault (listener-level defaults) and local rate limit filters are
decoded into models.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshlib.errors import XdsValidationError
from meshlib.xds_client._decode_util import (
    DecodeContext,
    config_source_is_ads,
    duration_s,
    unpack_any,
)
from meshlib.xds_client.decode_filters import (
    SUPPORTED_FILTER_TYPE_URLS,
    config_type_url,
    filter_config,
)
from meshlib.xds_client.decode_route import decode_route_configuration
from meshlib.xds_client.filter_models import ROUTER_FILTER_TYPE_URL
from meshlib.xds_client.inbound_resources import InboundListenerResource
from meshlib.xds_client.resources import (
    HttpFilter,
    ListenerResource,
    RouteConfigResource,
    RouterConfig,
)

__all__ = ["ROUTER_FILTER_TYPE_URL", "SUPPORTED_FILTER_TYPE_URLS", "decode_listener"]


def decode_listener(msg: Any) -> ListenerResource | InboundListenerResource:
    """Validate one ``envoy.config.listener.v3.Listener``: a client-side api_listener,
    or a server's inbound listener (:mod:`.decode_inbound`, imported for the first
    one: a client never loads the server side's decoders, RBAC and JWT)."""
    if not msg.HasField("api_listener"):
        from meshlib.xds_client.decode_inbound import decode_inbound_listener, is_inbound_listener

        if is_inbound_listener(msg):
            return decode_inbound_listener(msg)
    ctx = DecodeContext("Listener", msg.name)
    if not msg.name:
        raise ctx.error("name: required")
    if not msg.HasField("api_listener"):
        raise ctx.error("api_listener: required (meshlib consumes client-side api_listeners)")
    hcm = unpack_any(
        ctx, msg.api_listener.api_listener, hcm_pb2.HttpConnectionManager, "api_listener"
    )
    route_config_name, route_config = _route_specifier(ctx, hcm)
    max_stream_duration_s: float | None = None
    options = hcm.common_http_protocol_options
    if hcm.HasField("common_http_protocol_options") and options.HasField("max_stream_duration"):
        max_stream_duration_s = duration_s(options.max_stream_duration) or None
    chain = _http_filters(ctx, hcm.http_filters)
    return ListenerResource(
        name=msg.name,
        route_config_name=route_config_name,
        route_config=route_config,
        http_filters=tuple(f.name for f in chain),
        max_stream_duration_s=max_stream_duration_s,
        filters=chain,
    )


def _route_specifier(ctx: DecodeContext, hcm: Any) -> tuple[str | None, RouteConfigResource | None]:
    where = "api_listener.http_connection_manager"
    spec = hcm.WhichOneof("route_specifier")
    if spec == "rds":
        if not config_source_is_ads(hcm.rds.config_source):
            raise ctx.error(f"{where}.rds.config_source: must be ads or self")
        if not hcm.rds.route_config_name:
            raise ctx.error(f"{where}.rds.route_config_name: required")
        return hcm.rds.route_config_name, None
    if spec == "route_config":
        try:
            return None, decode_route_configuration(hcm.route_config)
        except XdsValidationError as exc:
            raise ctx.error(f"{where}.route_config: {exc}") from exc
    if spec is None:
        raise ctx.error(f"{where}: rds or route_config required")
    raise ctx.error(f"{where}.{spec}: not supported")


def _http_filters(ctx: DecodeContext, filters: Any) -> tuple[HttpFilter, ...]:
    where = "api_listener.http_connection_manager.http_filters"
    chain: list[HttpFilter] = []
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
        if flt.WhichOneof("config_type") != "typed_config":
            if flt.is_optional:
                continue
            raise ctx.error(f'{at} "{flt.name}": filter with no typed_config is not supported')
        config = filter_config(ctx, flt.typed_config, f"{at}.typed_config")
        if config is None:
            if flt.is_optional:
                continue
            url = config_type_url(ctx, flt.typed_config, f"{at}.typed_config")
            raise ctx.error(f'{at} "{flt.name}": filter {url or "(none)"} is not supported')
        if isinstance(config, RouterConfig):
            router_seen = True
            if flt.disabled:
                raise ctx.error(f"{at}.disabled: the router cannot be disabled")
        chain.append(HttpFilter(name=flt.name, config=config, disabled=flt.disabled))
    if not router_seen:
        raise ctx.error(f"{where}: the router filter ({ROUTER_FILTER_TYPE_URL}) must be last")
    return tuple(chain)
