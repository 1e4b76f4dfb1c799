from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import health_check_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import ENDPOINTS
from meshlib.xds_client.resources import (
    DropOverload,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    Locality,
)
from tests.xds_client import xds_builders as b


def decode(message: Any) -> EndpointsResource:
    return ENDPOINTS.decode(b.pack(message))


def test_localities_priorities_and_endpoints() -> None:
    draining = b.lb_endpoint("10.0.0.3", 81, weight=5)
    draining.health_status = health_check_pb2.DRAINING
    msg = b.cluster_load_assignment(
        "c1",
        b.locality_endpoints("z1", weight=3, endpoints=(b.lb_endpoint("10.0.0.1", 80), draining)),
        b.locality_endpoints("z2", weight=1, priority=1, endpoints=(b.lb_endpoint("::1", 82),)),
        b.locality_endpoints("z3", weight=0, priority=2),  # ignored, as gRPC does
    )
    msg.policy.drop_overloads.add(category="lb", drop_percentage={"numerator": 5})
    msg.policy.overprovisioning_factor.value = 100
    got = decode(msg)
    assert got.cluster_name == "c1"
    assert [(loc.locality, loc.weight, loc.priority) for loc in got.localities] == [
        (Locality("r", "z1"), 3, 0),
        (Locality("r", "z2"), 1, 1),
    ]
    assert got.localities[0].endpoints == (
        Endpoint("10.0.0.1", 80, HealthStatus.HEALTHY, 1),
        Endpoint("10.0.0.3", 81, HealthStatus.DRAINING, 5),
    )
    assert got.localities[1].endpoints[0].authority == "[::1]:82"
    assert got.drop_overloads == (DropOverload("lb", 50_000),)
    assert got.overprovisioning_factor == 100


def test_empty_assignment_is_valid() -> None:
    msg = b.cluster_load_assignment("c1")
    msg.ClearField("endpoints")
    assert decode(msg).localities == ()


def one_group(change: Callable[[Any], None]) -> Any:
    msg = b.cluster_load_assignment("c1")
    change(msg.endpoints[0])
    return msg


INVALID: list[tuple[str, Callable[[], Any], str]] = [
    ("no name", lambda: b.cluster_load_assignment(""), 'ClusterLoadAssignment "": cluster_name'),
    (
        "no locality",
        lambda: one_group(lambda g: g.ClearField("locality")),
        'ClusterLoadAssignment "c1": endpoints[0].locality: required',
    ),
    (
        "priority gap",
        lambda: b.cluster_load_assignment(
            "c1",
            b.locality_endpoints("z1"),
            b.locality_endpoints("z2", priority=2, endpoints=(b.lb_endpoint("10.0.0.2"),)),
        ),
        "endpoints: priority 1 is missing (priorities present: 0, 2",
    ),
    (
        "no priority 0",
        lambda: b.cluster_load_assignment("c1", b.locality_endpoints("z1", priority=1)),
        "endpoints: priority 0 is missing",
    ),
    (
        "duplicate locality",
        lambda: b.cluster_load_assignment(
            "c1",
            b.locality_endpoints("z1"),
            b.locality_endpoints("z1", endpoints=(b.lb_endpoint("10.0.0.2"),)),
        ),
        "endpoints[1].locality: r/z1/ appears twice at priority 0",
    ),
    (
        "duplicate address",
        lambda: b.cluster_load_assignment(
            "c1", b.locality_endpoints("z1"), b.locality_endpoints("z2")
        ),
        "endpoints[1].lb_endpoints[0].endpoint.address: duplicate endpoint address 10.0.0.1:8080",
    ),
    (
        "zero endpoint weight",
        lambda: one_group(lambda g: g.lb_endpoints[0].load_balancing_weight.SetInParent()),
        "endpoints[0].lb_endpoints[0].load_balancing_weight: must be greater than 0",
    ),
    (
        "no port",
        lambda: one_group(
            lambda g: g.lb_endpoints[0].endpoint.address.socket_address.ClearField("port_value")
        ),
        "lb_endpoints[0].endpoint.address.socket_address.port_value: required",
    ),
    (
        "pipe address",
        lambda: one_group(lambda g: g.lb_endpoints[0].endpoint.address.pipe.SetInParent()),
        "lb_endpoints[0].endpoint.address: socket_address required",
    ),
    (
        "no endpoint",
        lambda: one_group(lambda g: g.lb_endpoints[0].ClearField("endpoint")),
        "lb_endpoints[0].endpoint: required",
    ),
    (
        "drop without category",
        lambda: (lambda m: (m.policy.drop_overloads.add(drop_percentage={"numerator": 1}), m)[1])(
            b.cluster_load_assignment("c1")
        ),
        "policy.drop_overloads[0].category: required",
    ),
    (
        "zero overprovisioning factor",
        lambda: _with_policy(lambda m: m.policy.overprovisioning_factor.SetInParent()),
        'ClusterLoadAssignment "c1": policy.overprovisioning_factor: must be greater than 0',
    ),
    (
        "label of a list",
        lambda: _labelled({"version": ["v1"]}),
        'ClusterLoadAssignment "c1": endpoints[0].lb_endpoints[0].metadata'
        '.filter_metadata["envoy.lb"].version: must be a string, bool or number',
    ),
]


def _with_policy(change: Callable[[Any], None]) -> Any:
    msg = b.cluster_load_assignment("c1")
    change(msg)
    return msg


def _labelled(labels: dict[str, Any]) -> Any:
    msg = b.cluster_load_assignment("c1")
    msg.endpoints[0].lb_endpoints[0].metadata.filter_metadata["envoy.lb"].update(labels)
    return msg


def test_endpoint_labels_from_envoy_lb_metadata() -> None:
    msg = _labelled({"version": "v1", "canary": True, "shard": 3, "ratio": 0.5})
    msg.endpoints[0].lb_endpoints[0].metadata.filter_metadata["other"].update({"x": "y"})
    (endpoint,) = decode(msg).all_endpoints()
    assert endpoint.labels == {"version": "v1", "canary": "true", "shard": "3", "ratio": "0.5"}
    assert hash(endpoint) == hash(decode(msg).all_endpoints()[0])
    (plain,) = decode(b.cluster_load_assignment("c1")).all_endpoints()
    assert plain.labels == {}


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_endpoints(build: Callable[[], Any], expected: str) -> None:
    with pytest.raises(XdsValidationError) as info:
        decode(build())
    assert expected in str(info.value)
