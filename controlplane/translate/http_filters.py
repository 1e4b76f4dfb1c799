"""The HTTP filter chain of a connection manager, and per-route filter configs.

Order: local rate limit, fault, router (the router is always last). Filters
are added only when the config needs them, so a mesh without faults or rate
limits gets the router alone. The local rate limit filter is marked
``is_optional`` (gRPC's xDS client does not implement it and would otherwise
refuse the listener); its per-route or per-virtual-host configs are wrapped in
``FilterConfig{is_optional: true}`` for the same reason. gRPC implements the
fault filter (gRFC A33), so it is not optional.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.translate.common import pack

ROUTER_FILTER_NAME = "envoy.filters.http.router"
FAULT_FILTER_NAME = "envoy.filters.http.fault"
LOCAL_RATE_LIMIT_FILTER_NAME = "envoy.filters.http.local_ratelimit"


def router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=ROUTER_FILTER_NAME, typed_config=pack(router_pb2.Router()))


def http_filters(
    *,
    fault: fault_pb2.HTTPFault | None = None,
    rate_limit: local_rate_limit_pb2.LocalRateLimit | None = None,
) -> list[hcm_pb2.HttpFilter]:
    """The chain: each given filter config (listener level) in order, router last."""
    chain: list[hcm_pb2.HttpFilter] = []
    if rate_limit is not None:
        chain.append(
            hcm_pb2.HttpFilter(
                name=LOCAL_RATE_LIMIT_FILTER_NAME, typed_config=pack(rate_limit), is_optional=True
            )
        )
    if fault is not None:
        chain.append(hcm_pb2.HttpFilter(name=FAULT_FILTER_NAME, typed_config=pack(fault)))
    chain.append(router_filter())
    return chain


def optional_filter_config(config: Message) -> any_pb2.Any:
    """A per-route / per-host config that clients without the filter may skip."""
    return pack(rc.FilterConfig(config=pack(config), is_optional=True))
