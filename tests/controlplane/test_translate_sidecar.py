"""Envoy sidecar nodes: one outbound listener and route table with every service."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.model import NodeInfo
from controlplane.traffic_model import (
    HTTPRoute,
    LocalRateLimit,
    VirtualServiceExtensions,
)
from controlplane.translate import TranslationError, translate
from controlplane.translate.http_filters import (
    FAULT_FILTER_NAME,
    LOCAL_RATE_LIMIT_FILTER_NAME,
    ROUTER_FILTER_NAME,
)
from controlplane.translate.route_action import proxy_timeout_form
from controlplane.translate.typeurls import LISTENER_TYPE_URL, ROUTE_CONFIG_TYPE_URL
from tests.controlplane.route_cases import (
    PROXYLESS,
    config,
    manager_of,
    resources,
    routes_of,
    sidecar,
    to,
    vs,
)

SPLIT = HTTPRoute(
    name="split", route=(to("attendees", "v1", weight=30), to("attendees", "v2", weight=70))
)


def test_sidecar_gets_one_outbound_listener_and_no_api_listeners() -> None:
    listeners, tables = resources(config(), sidecar(15001))
    assert sorted(listeners) == ["mesh_outbound"]
    assert sorted(tables) == ["mesh_outbound"]
    listener = listeners["mesh_outbound"]
    assert not listener.HasField("api_listener")
    address = listener.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 15001)
    assert listener.traffic_direction == base_pb2.OUTBOUND
    manager = manager_of(listener)
    assert manager.codec_type == hcm_pb2.HttpConnectionManager.AUTO
    assert manager.stat_prefix == "mesh_outbound"
    assert manager.rds.route_config_name == "mesh_outbound"
    assert manager.rds.config_source.HasField("ads")
    assert [f.name for f in manager.http_filters] == [ROUTER_FILTER_NAME]


def test_proxyless_nodes_get_no_sidecar_listener() -> None:
    listeners, tables = resources(config(), PROXYLESS)
    assert "mesh_outbound" not in listeners and "mesh_outbound" not in tables
    assert all(listener.HasField("api_listener") for listener in listeners.values())


def test_one_virtual_host_per_service_with_the_proxyless_routes() -> None:
    mesh = config(vs(SPLIT))
    _, tables = resources(mesh, sidecar())
    vhosts = {v.name: v for v in tables["mesh_outbound"].virtual_hosts}
    assert sorted(vhosts) == ["attendees:8080", "sessions:80", "sessions:8080"]
    assert list(vhosts["sessions:80"].domains) == ["sessions:80", "sessions"]
    assert list(vhosts["attendees:8080"].domains) == ["attendees:8080"]
    for name, vhost in vhosts.items():
        proxyless = routes_of(mesh, name)
        assert [r.SerializeToString(deterministic=True) for r in vhost.routes] == [
            proxy_timeout_form(r).SerializeToString(deterministic=True) for r in proxyless
        ]


@pytest.mark.parametrize("timeout_s", [1.5, 0.0, None])
def test_sidecar_routes_carry_the_timeout_envoys_router_honours(timeout_s: float | None) -> None:
    """max_stream_duration would make Envoy ignore ``timeout``: the sidecar gets Istio's
    max_grpc_timeout instead; proxyless clients keep grpc_timeout_header_max (gRFC A31)."""
    mesh = config(vs(HTTPRoute(name="r", route=(to("attendees"),), timeout_s=timeout_s)))
    _, tables = resources(mesh, sidecar())
    routes = {v.name: list(v.routes) for v in tables["mesh_outbound"].virtual_hosts}
    for vhost_routes in routes.values():  # attendees by the rule, sessions by the default
        for route in vhost_routes:
            action = route.route
            assert not action.HasField("max_stream_duration")
            assert action.HasField("timeout") and action.max_grpc_timeout == action.timeout
    (ruled,) = routes["attendees:8080"]
    assert ruled.route.timeout.ToMilliseconds() == round((timeout_s or 0) * 1000)
    (proxyless,) = routes_of(mesh)
    assert proxyless.route.max_stream_duration.grpc_timeout_header_max == ruled.route.timeout
    assert not proxyless.route.HasField("max_grpc_timeout")


def test_routes_that_do_not_forward_keep_their_form() -> None:
    redirect = rc.Route(redirect=rc.RedirectAction(host_redirect="elsewhere"))
    assert proxy_timeout_form(redirect) is redirect


def test_per_service_filter_settings_ride_on_the_virtual_host() -> None:
    limit = LocalRateLimit(max_tokens=3, tokens_per_fill=3, fill_interval_s=1.0, status=503)
    extensions = VirtualServiceExtensions(local_rate_limit=limit, fault_headers_enabled=True)
    listeners, tables = resources(config(vs(SPLIT, extensions=extensions)), sidecar())
    filters = manager_of(listeners["mesh_outbound"]).http_filters
    assert [f.name for f in filters] == [
        LOCAL_RATE_LIMIT_FILTER_NAME,
        FAULT_FILTER_NAME,
        ROUTER_FILTER_NAME,
    ]
    assert filters[0].is_optional
    neutral = local_rate_limit_pb2.LocalRateLimit()
    assert filters[0].typed_config.Unpack(neutral) and not neutral.HasField("token_bucket")
    vhosts = {v.name: v for v in tables["mesh_outbound"].virtual_hosts}
    attendees = vhosts["attendees:8080"]
    wrapper = rc.FilterConfig()
    assert attendees.typed_per_filter_config[LOCAL_RATE_LIMIT_FILTER_NAME].Unpack(wrapper)
    assert wrapper.is_optional
    bucket = local_rate_limit_pb2.LocalRateLimit()
    assert wrapper.config.Unpack(bucket) and bucket.token_bucket.max_tokens == 3
    assert bucket.status.code == 503
    faults = fault_pb2.HTTPFault()
    assert attendees.typed_per_filter_config[FAULT_FILTER_NAME].Unpack(faults)
    assert faults.abort.HasField("header_abort")
    assert not vhosts["sessions:8080"].typed_per_filter_config


@pytest.mark.parametrize("port", [15001, 15001.0, "15001"])
def test_outbound_port_from_metadata(port: object) -> None:
    node = NodeInfo(id="s", metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": port})
    listeners, _ = resources(config(), node)
    assert listeners["mesh_outbound"].address.socket_address.port_value == 15001


@pytest.mark.parametrize("port", [None, "x", 0, 70000, 1.5, True])
def test_bad_outbound_port_is_an_error(port: object) -> None:
    metadata: dict[str, object] = {"mesh.proxy": "sidecar"}
    if port is not None:
        metadata["mesh.outbound_port"] = port
    with pytest.raises(TranslationError, match=r"mesh\.outbound_port"):
        resources(config(), NodeInfo(id="s", metadata=metadata))


def test_nodes_differing_by_id_translate_alike() -> None:
    mesh = config(vs(SPLIT))
    one = translate(mesh, (), sidecar(15001, node_id="a"))
    two = translate(mesh, (), sidecar(15001, node_id="b"))
    for type_url in (LISTENER_TYPE_URL, ROUTE_CONFIG_TYPE_URL):
        assert {k: v.SerializeToString(deterministic=True) for k, v in one[type_url].items()} == {
            k: v.SerializeToString(deterministic=True) for k, v in two[type_url].items()
        }
