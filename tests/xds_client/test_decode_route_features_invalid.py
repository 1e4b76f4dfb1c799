"""Invalid RDS features of issues 3 and 4: each refused with the field named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2

from meshlib.errors import XdsValidationError
from tests.xds_client import xds_builders as b
from tests.xds_client.change_steps import all_of
from tests.xds_client.rds_helpers import (
    ROUTE,
    VHOST,
    config_with,
    decode,
    header,
    route_with,
)

# --- invalid --------------------------------------------------------------------------


def _weighted(total: int, *weights: int) -> Callable[[Any], object]:
    def change(r: Any) -> None:
        r.route.ClearField("cluster")
        r.route.weighted_clusters.total_weight.value = total
        for i, weight in enumerate(weights):
            r.route.weighted_clusters.clusters.add(name=f"c{i}", weight={"value": weight})

    return change


def _redirect(**fields: Any) -> Callable[[Any], object]:
    def change(r: Any) -> None:
        r.ClearField("route")
        for key, value in fields.items():
            if key == "regex":
                r.redirect.regex_rewrite.pattern.regex = value
            else:
                setattr(r.redirect, key, value)
        r.redirect.SetInParent()

    return change


def _direct(status: int, body: bytes = b"", filename: str = "") -> Callable[[Any], object]:
    def change(r: Any) -> None:
        r.ClearField("route")
        r.direct_response.status = status
        if body:
            r.direct_response.body.inline_bytes = body
        if filename:
            r.direct_response.body.filename = filename

    return change


def _route_header(option: Any) -> Callable[[Any], object]:
    return lambda r: r.request_headers_to_add.append(option)


def _per_filter(value: Any, key: str = "f") -> Callable[[Any], object]:
    return lambda r: r.typed_per_filter_config[key].CopyFrom(value)


INVALID: list[tuple[str, Callable[[Any], object], str]] = [
    (
        "total weight mismatch",
        _weighted(100, 30, 30),
        f"{ROUTE}.route.weighted_clusters.total_weight: 100 but the cluster weights sum to 60",
    ),
    (
        "weighted cluster header",
        all_of(
            lambda r: _weighted(0, 1)(r),
            lambda r: setattr(r.route.weighted_clusters, "header_name", "x"),
        ),
        f"{ROUTE}.route.weighted_clusters.header_name: not supported",
    ),
    (
        "mirror without cluster",
        lambda r: r.route.request_mirror_policies.add(),
        f"{ROUTE}.route.request_mirror_policies[0].cluster: required",
    ),
    (
        "mirror cluster header",
        lambda r: r.route.request_mirror_policies.add(cluster_header="x"),
        f"{ROUTE}.route.request_mirror_policies[0].cluster_header: not supported",
    ),
    (
        "prefix and regex rewrite",
        all_of(
            lambda r: setattr(r.route, "prefix_rewrite", "/a"),
            lambda r: setattr(r.route.regex_rewrite.pattern, "regex", "a"),
        ),
        f"{ROUTE}.route: prefix_rewrite and regex_rewrite are both set",
    ),
    (
        "bad regex rewrite",
        lambda r: setattr(r.route.regex_rewrite.pattern, "regex", "(("),
        f"{ROUTE}.route.regex_rewrite: invalid regex '(('",
    ),
    (
        "regex rewrite without pattern",
        lambda r: setattr(r.route.regex_rewrite, "substitution", "x"),
        f"{ROUTE}.route.regex_rewrite.pattern: required",
    ),
    (
        "metadata match",
        lambda r: r.route.metadata_match.SetInParent(),
        f"{ROUTE}.route.metadata_match: not supported",
    ),
    (
        "auto host rewrite",
        lambda r: setattr(r.route.auto_host_rewrite, "value", True),
        f"{ROUTE}.route.auto_host_rewrite: not supported",
    ),
    (
        "negative timeout",
        lambda r: setattr(r.route.timeout, "seconds", -1),
        f"{ROUTE}.route.timeout: invalid duration (seconds=-1, nanos=0)",
    ),
    (
        "bad max stream duration",
        lambda r: setattr(r.route.max_stream_duration.grpc_timeout_header_offset, "nanos", -5),
        f"{ROUTE}.route.max_stream_duration.grpc_timeout_header_offset: invalid duration",
    ),
    (
        "cookie without name",
        lambda r: r.route.hash_policy.add(cookie={"path": "/"}),
        f"{ROUTE}.route.hash_policy[0].cookie.name: required",
    ),
    (
        "query parameter without name",
        lambda r: r.route.hash_policy.add(query_parameter={}),
        f"{ROUTE}.route.hash_policy[0].query_parameter.name: required",
    ),
    (
        "redirect port",
        _redirect(port_redirect=70000),
        f"{ROUTE}.redirect.port_redirect: 70000 is out of range",
    ),
    (
        "redirect code",
        _redirect(response_code=9),
        f"{ROUTE}.redirect.response_code: unknown value 9",
    ),
    (
        "redirect path",
        _redirect(path_redirect="no-slash"),
        f"{ROUTE}.redirect.path_redirect: must start with /",
    ),
    (
        "redirect regex",
        _redirect(regex="(("),
        f"{ROUTE}.redirect.regex_rewrite: invalid regex",
    ),
    ("direct status", _direct(99), f"{ROUTE}.direct_response.status: 99 is not in 200..599"),
    (
        "direct body too big",
        _direct(200, b"x" * 4097),
        f"{ROUTE}.direct_response.body: 4097 bytes, more than "
        "max_direct_response_body_size_bytes (4096)",
    ),
    (
        "direct body from a file",
        _direct(200, filename="/etc/passwd"),
        f"{ROUTE}.direct_response.body.filename: not supported",
    ),
    (
        "header host",
        _route_header(header("host", "x")),
        f"{ROUTE}.request_headers_to_add[0].header.key: the host header may not be modified",
    ),
    (
        "pseudo header",
        _route_header(header(":path", "/x")),
        f"{ROUTE}.request_headers_to_add[0].header.key: pseudo-header ':path' may not",
    ),
    (
        "header name",
        _route_header(header("bad name", "x")),
        f"{ROUTE}.request_headers_to_add[0].header.key: 'bad name' is not a valid header name",
    ),
    (
        "header value",
        _route_header(header("x", "a\r\nb")),
        f"{ROUTE}.request_headers_to_add[0].header.value: contains CR, LF or NUL",
    ),
    (
        "append and append action",
        _route_header(header("x", "y", append={"value": True}, append_action=1)),
        f"{ROUTE}.request_headers_to_add[0]: append and append_action are both set",
    ),
    (
        "header without header",
        _route_header(base_pb2.HeaderValueOption()),
        f"{ROUTE}.request_headers_to_add[0].header: required",
    ),
    (
        "remove empty",
        lambda r: r.response_headers_to_remove.append(""),
        f"{ROUTE}.response_headers_to_remove[0]: header name required",
    ),
    (
        "unknown required filter config",
        _per_filter(b.pack(rbac_pb2.RBACPerRoute())),
        f'{ROUTE}.typed_per_filter_config["f"]: filter config '
        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute is not supported",
    ),
    (
        "unknown filter config not optional in FilterConfig",
        _per_filter(b.pack(rc.FilterConfig(config=b.pack(rbac_pb2.RBACPerRoute())))),
        f'{ROUTE}.typed_per_filter_config["f"].config: filter config',
    ),
    (
        "FilterConfig without config",
        _per_filter(b.pack(rc.FilterConfig(is_optional=True))),
        f'{ROUTE}.typed_per_filter_config["f"].config: required unless disabled',
    ),
    (
        "router per-route",
        _per_filter(b.pack(router_pb2.Router())),
        f'{ROUTE}.typed_per_filter_config["f"]: the router filter takes no per-route config',
    ),
    (
        "bad fault per-route even if optional",
        _per_filter(
            b.pack(
                rc.FilterConfig(
                    config=b.pack(fault_pb2.HTTPFault(abort={"http_status": 700})),
                    is_optional=True,
                )
            )
        ),
        f'{ROUTE}.typed_per_filter_config["f"].config.abort.http_status: 700 is not in 200..599',
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_route_features(change: Callable[[Any], object], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(route_with(change))
    assert expected in str(info.value)


INVALID_CONFIG: list[tuple[str, Callable[[Any], object], str]] = [
    (
        "vhost rate limits",
        lambda c: c.virtual_hosts[0].rate_limits.add(),
        f"{VHOST}.rate_limits: not supported",
    ),
    (
        "vhost header",
        lambda c: c.virtual_hosts[0].response_headers_to_add.append(header("", "x")),
        f"{VHOST}.response_headers_to_add[0].header.key: header name required",
    ),
    (
        "config header",
        lambda c: c.request_headers_to_remove.append("Host"),
        'RouteConfiguration "rc": request_headers_to_remove[0]: the host header may not',
    ),
    (
        "config mirror",
        lambda c: c.request_mirror_policies.add(),
        'RouteConfiguration "rc": request_mirror_policies[0].cluster: required',
    ),
    (
        "smaller body limit",
        all_of(
            lambda c: setattr(c.max_direct_response_body_size_bytes, "value", 2),
            lambda c: _direct(200, b"abc")(c.virtual_hosts[0].routes[0]),
        ),
        "direct_response.body: 3 bytes, more than max_direct_response_body_size_bytes (2)",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [c[1:] for c in INVALID_CONFIG], ids=[c[0] for c in INVALID_CONFIG]
)
def test_invalid_route_config_features(change: Callable[[Any], object], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(config_with(change))
    assert expected in str(info.value)
