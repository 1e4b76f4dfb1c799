from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import struct_pb2
from xds.type.v3 import typed_struct_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import LISTENER
from tests.xds_client import xds_builders as b

# A filter type meshlib does not run (yet).
UNKNOWN = hcm_pb2.HttpFilter(name="rbac", typed_config=b.pack(rbac_pb2.RBAC()))


def decode(message: Any) -> Any:
    return LISTENER.decode(b.pack(message))


def with_hcm(change: Callable[[Any], None]) -> Any:
    manager = b.hcm()
    change(manager)
    return b.listener(manager=manager)


def test_rds_listener() -> None:
    got = decode(b.listener("svc:80", "rc-1"))
    assert got.name == "svc:80"
    assert got.route_config_name == "rc-1"
    assert got.route_config is None
    assert got.http_filters == ("envoy.filters.http.router",)


def test_inline_route_config_and_max_stream_duration() -> None:
    def change(m: Any) -> None:
        m.route_config.CopyFrom(b.route_config("inline", "c9"))
        m.common_http_protocol_options.max_stream_duration.seconds = 7

    got = decode(with_hcm(change))
    assert got.route_config_name is None
    assert got.route_config is not None
    assert got.route_config.cluster_names() == frozenset({"c9"})
    assert got.max_stream_duration_s == 7.0


def test_optional_unknown_filter_is_skipped() -> None:
    def change(m: Any) -> None:
        optional = hcm_pb2.HttpFilter(
            name="rbac", typed_config=UNKNOWN.typed_config, is_optional=True
        )
        m.http_filters.insert(0, optional)

    assert decode(with_hcm(change)).http_filters == ("envoy.filters.http.router",)


def test_router_inside_typed_struct() -> None:
    def change(m: Any) -> None:
        wrapped = typed_struct_pb2.TypedStruct(
            type_url="type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            value=struct_pb2.Struct(),
        )
        m.http_filters[0].typed_config.CopyFrom(b.pack(wrapped))

    assert decode(with_hcm(change)).http_filters == ("envoy.filters.http.router",)


def _self_source(m: Any) -> None:
    m.rds.config_source.CopyFrom(
        config_source_pb2.ConfigSource(self=config_source_pb2.SelfConfigSource())
    )


def test_self_config_source_is_accepted() -> None:
    assert decode(with_hcm(_self_source)).route_config_name == "rc"


INVALID: list[tuple[str, Callable[[], Any], str]] = [
    ("no name", lambda: b.listener(name=""), 'Listener "": name: required'),
    (
        "no api_listener",
        lambda: b.listener().__class__(name="l1"),
        'Listener "l1": api_listener: required',
    ),
    (
        "api_listener not an HCM",
        lambda: b.listener(manager=b.route_config()),
        "api_listener: expected type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
    ),
    (
        "rds not over ads",
        lambda: with_hcm(lambda m: m.rds.config_source.path_config_source.SetInParent()),
        "rds.config_source: must be ads or self",
    ),
    (
        "rds without name",
        lambda: with_hcm(lambda m: setattr(m.rds, "route_config_name", "")),
        "rds.route_config_name: required",
    ),
    (
        "no route specifier",
        lambda: with_hcm(lambda m: m.ClearField("rds")),
        "rds or route_config required",
    ),
    (
        "scoped routes",
        lambda: with_hcm(lambda m: m.scoped_routes.SetInParent()),
        "scoped_routes: not supported",
    ),
    (
        "no filters",
        lambda: with_hcm(lambda m: m.ClearField("http_filters")),
        "the router filter (type.googleapis.com/envoy.extensions.filters.http.router.v3.Router)"
        " must be last",
    ),
    (
        "filter after router",
        lambda: with_hcm(lambda m: m.http_filters.append(UNKNOWN)),
        'http_filters[1]: filter "rbac" comes after the router',
    ),
    (
        "duplicate filter names",
        lambda: with_hcm(lambda m: m.http_filters.insert(0, b.router_filter())),
        'http_filters[1]: duplicate filter name "envoy.filters.http.router"',
    ),
    (
        "unknown required filter",
        lambda: with_hcm(lambda m: m.http_filters.insert(0, UNKNOWN)),
        'http_filters[0] "rbac": filter type.googleapis.com/envoy.extensions.filters.http.rbac'
        ".v3.RBAC is not supported",
    ),
    (
        "filter without config",
        lambda: with_hcm(lambda m: m.http_filters.insert(0, hcm_pb2.HttpFilter(name="x"))),
        'http_filters[0] "x": filter with no typed_config is not supported',
    ),
    (
        "bad inline route config",
        lambda: with_hcm(lambda m: m.route_config.CopyFrom(b.route_config(domains=()))),
        'Listener "svc:80": api_listener.http_connection_manager.route_config: '
        'RouteConfiguration "rc": virtual_hosts[0] "vh".domains: must not be empty',
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_listener(build: Callable[[], Any], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(build())
    assert expected in str(info.value)


def test_wrong_type_url_and_garbage_bytes() -> None:
    with pytest.raises(XdsValidationError, match="resource of type"):
        LISTENER.decode(b.pack(b.cluster()))
    garbage = b.pack(b.listener())
    garbage.value = b"\xff\xff\xff"
    with pytest.raises(XdsValidationError, match="cannot parse"):
        LISTENER.decode(garbage)
    assert LISTENER.resource_name(garbage) is None
    assert LISTENER.resource_name(b.pack(b.listener("x:1"))) == "x:1"
