"""Builders and decode helpers shared by the RDS feature tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from meshlib.xds_client import ROUTE_CONFIG
from meshlib.xds_client.resources import (
    Route,
    RouteAction,
    RouteConfigResource,
)
from tests.xds_client import xds_builders as b

__all__ = [
    "ROUTE",
    "VHOST",
    "config_with",
    "decode",
    "fault_any",
    "first_route",
    "first_route_action",
    "header",
    "route_with",
    "vhost_with",
]

ROUTE = 'RouteConfiguration "rc": virtual_hosts[0] "vh".routes[0]'
VHOST = 'RouteConfiguration "rc": virtual_hosts[0] "vh"'


def decode(message: Any) -> RouteConfigResource:
    return ROUTE_CONFIG.decode(b.pack(message))


def config_with(change: Callable[[Any], object]) -> Any:
    config = b.route_config()
    change(config)
    return config


def route_with(change: Callable[[Any], object]) -> Any:
    return config_with(lambda c: change(c.virtual_hosts[0].routes[0]))


def vhost_with(change: Callable[[Any], object]) -> Any:
    return config_with(lambda c: change(c.virtual_hosts[0]))


def first_route(config: RouteConfigResource) -> Any:
    return config.virtual_hosts[0].routes[0]


def first_route_action(route: Route) -> RouteAction:
    assert route.action is not None
    return route.action


def header(key: str, value: str, **kwargs: Any) -> Any:
    return base_pb2.HeaderValueOption(header={"key": key, "value": value}, **kwargs)


def fault_any() -> Any:
    return b.pack(
        fault_pb2.HTTPFault(
            abort={"http_status": 503, "percentage": {"numerator": 50}},
        )
    )
