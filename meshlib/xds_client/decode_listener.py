"""Listener (LDS) -> ListenerResource, validated as gRPC's client validates it.

A client-side listener must be an ``api_listener`` holding an
HttpConnectionManager (gRFC A27). Its routes come over RDS on this ADS stream
(config source ``ads`` or ``self``) or inline. HTTP filters (gRFC A39): names
unique, each with a typed config of a known type (unknown ones only when
``is_optional``), and the router last.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from udpa.type.v1 import typed_struct_pb2 as udpa_typed_struct_pb2
from xds.type.v3 import typed_struct_pb2 as xds_typed_struct_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client._decode_util import (
    DecodeContext,
    config_source_is_ads,
    duration_s,
    unpack_any,
)
from meshlib.xds_client.decode_route import decode_route_configuration
from meshlib.xds_client.resources import ListenerResource, RouteConfigResource

ROUTER_FILTER_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# Filter config type URLs meshlib implements; the router is the only one so far.
SUPPORTED_FILTER_TYPE_URLS = frozenset({ROUTER_FILTER_TYPE_URL})

_TYPED_STRUCT_URLS = {
    "type.googleapis.com/" + cls.DESCRIPTOR.full_name: cls
    for cls in (udpa_typed_struct_pb2.TypedStruct, xds_typed_struct_pb2.TypedStruct)
}


def decode_listener(msg: Any) -> ListenerResource:
    """Validate one ``envoy.config.listener.v3.Listener``."""
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
    return ListenerResource(
        name=msg.name,
        route_config_name=route_config_name,
        route_config=route_config,
        http_filters=_http_filters(ctx, hcm.http_filters),
        max_stream_duration_s=max_stream_duration_s,
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


def _http_filters(ctx: DecodeContext, filters: Any) -> tuple[str, ...]:
    where = "api_listener.http_connection_manager.http_filters"
    names: list[str] = []
    router_at: int | None = None
    for i, flt in enumerate(filters):
        at = f"{where}[{i}]"
        if not flt.name:
            raise ctx.error(f"{at}.name: required")
        if flt.name in names:
            raise ctx.error(f'{at}: duplicate filter name "{flt.name}"')
        if router_at is not None:
            raise ctx.error(f'{at}: filter "{flt.name}" comes after the router')
        type_url = _filter_type_url(ctx, flt, at)
        if type_url is None or type_url not in SUPPORTED_FILTER_TYPE_URLS:
            if flt.is_optional:
                continue
            what = type_url or "no typed_config"
            raise ctx.error(f'{at} "{flt.name}": filter {what} is not supported')
        names.append(flt.name)
        if type_url == ROUTER_FILTER_TYPE_URL:
            router_at = i
    if router_at is None:
        raise ctx.error(f"{where}: the router filter ({ROUTER_FILTER_TYPE_URL}) must be last")
    return tuple(names)


def _filter_type_url(ctx: DecodeContext, flt: Any, at: str) -> str | None:
    """The filter's config type URL, looking inside a TypedStruct wrapper."""
    if flt.WhichOneof("config_type") != "typed_config":
        return None
    config = flt.typed_config
    wrapper = _TYPED_STRUCT_URLS.get(config.type_url)
    if wrapper is None:
        return str(config.type_url)
    typed_struct = unpack_any(ctx, config, wrapper, f"{at}.typed_config")
    return str(typed_struct.type_url)
