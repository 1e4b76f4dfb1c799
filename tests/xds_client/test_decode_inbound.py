"""A serving workload's inbound listener, as the control plane sends it, decodes into
meshlib's model (mTLS, JWT then RBAC filters in order); what meshlib cannot enforce is
NACKed naming the field, never skipped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from meshlib.errors import XdsValidationError
from meshlib.security.authz_model import JwtAuthnConfig, RbacAction, RbacConfig
from meshlib.xds_client.inbound_resources import InboundListenerResource
from meshlib.xds_client.resource_types import LISTENER
from tests.xds_client import xds_builders as b
from tests.xds_client.fuzz_corpus import INBOUND_PREFIX, seeds


def _inbound() -> Any:
    (listener,) = [
        m for m in seeds()[b.LDS] if m.name.startswith(INBOUND_PREFIX + "127.0.0.1:50052")
    ]
    copy = type(listener)()
    copy.CopyFrom(listener)
    return copy


def _manager(listener: Any) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def _set_manager(listener: Any, manager: hcm_pb2.HttpConnectionManager) -> None:
    listener.filter_chains[0].filters[0].typed_config.Pack(manager)


def test_the_control_planes_inbound_listener_decodes() -> None:
    resource = LISTENER.decode(b.pack(_inbound()))
    assert isinstance(resource, InboundListenerResource)
    assert (resource.address, resource.port) == ("127.0.0.1", 50052)
    assert resource.tls is not None and resource.tls.require_client_certificate
    kinds = [type(f.config) for f in resource.filters]
    assert kinds == [JwtAuthnConfig, RbacConfig, RbacConfig]  # JWT, DENY, ALLOW
    actions = [f.config.rules.action for f in resource.filters[1:]]  # type: ignore[union-attr]
    assert actions == [RbacAction.DENY, RbacAction.ALLOW]


def _second_chain(listener: Any) -> None:
    listener.filter_chains.append(listener.filter_chains[0])


def _chain_match(listener: Any) -> None:
    listener.filter_chains[0].filter_chain_match.destination_port.value = 1


def _xff(listener: Any) -> None:
    manager = _manager(listener)
    manager.xff_num_trusted_hops = 1
    _set_manager(listener, manager)


def _fault_filter(listener: Any) -> None:
    manager = _manager(listener)
    fault = hcm_pb2.HttpFilter(name="fault")
    fault.typed_config.Pack(fault_pb2.HTTPFault())
    manager.http_filters.insert(0, fault)
    _set_manager(listener, manager)


def _forwarding_route(listener: Any) -> None:
    manager = _manager(listener)
    route = manager.route_config.virtual_hosts[0].routes[0]
    route.route.cluster = "elsewhere"
    _set_manager(listener, manager)


def _disabled_rbac(listener: Any) -> None:
    manager = _manager(listener)
    manager.http_filters[1].disabled = True
    _set_manager(listener, manager)


def _two_network_filters(listener: Any) -> None:
    chain = listener.filter_chains[0]
    chain.filters.append(listener_components_pb2.Filter(name="x", typed_config=any_pb2.Any()))


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (_second_chain, "filter_chains: meshlib serves one filter chain per listener"),
        (_chain_match, "filter_chains[0].filter_chain_match: not supported"),
        (_xff, "http_connection_manager.xff_num_trusted_hops: not supported"),
        (_fault_filter, "is not supported inbound"),
        (_forwarding_route, "an inbound route must be non_forwarding_action"),
        (_disabled_rbac, "http_filters[1].disabled"),
        (_two_network_filters, "filter_chains[0].filters: exactly one"),
    ],
)
def test_what_meshlib_cannot_enforce_is_nacked(mutate: Callable[[Any], None], error: str) -> None:
    listener = _inbound()
    mutate(listener)
    with pytest.raises(XdsValidationError) as caught:
        LISTENER.decode(b.pack(listener))
    assert error in str(caught.value)
    assert str(caught.value).startswith(f'Listener "{listener.name}": ')


def test_an_optional_unknown_filter_is_skipped() -> None:
    listener = _inbound()
    manager = _manager(listener)
    fault = hcm_pb2.HttpFilter(name="fault", is_optional=True)
    fault.typed_config.Pack(fault_pb2.HTTPFault())
    manager.http_filters.insert(0, fault)
    _set_manager(listener, manager)
    resource = LISTENER.decode(b.pack(listener))
    assert isinstance(resource, InboundListenerResource)
    assert "fault" not in [f.name for f in resource.filters]
